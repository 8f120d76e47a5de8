package claims

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// claimant is one object's claim on something, ranked by beats.
type claimant struct {
	name     string
	created  metav1.Time
	inForce  bool
	deleting bool
}

// beats says whether a's claim beats b's: one in force beats a new one; then the older object
// (creation time, then name). An object not created yet (a create under admission may carry no
// creation time) is the newest of all.
func beats(a, b claimant) bool {
	if a.inForce != b.inForce {
		return a.inForce
	}
	switch az, bz := a.created.IsZero(), b.created.IsZero(); {
	case az && !bz:
		return false
	case bz && !az:
		return true
	case !a.created.Equal(&b.created):
		return a.created.Before(&b.created)
	}
	return a.name < b.name
}

// winner is, among others, the claimant whose claim beats mine (the first by name when several
// do), or "" when mine stands. Others being deleted and mine itself are not rivals.
func winner(mine claimant, others []claimant) string {
	best := ""
	for _, o := range others {
		if o.name == mine.name || o.deleting || !beats(o, mine) {
			continue
		}
		if best == "" || o.name < best {
			best = o.name
		}
	}
	return best
}
