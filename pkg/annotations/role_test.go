package annotations

import (
	"strings"
	"testing"
)

// TestAppliedRole: a report carries a replica's role, or none (a single gateway); any other
// value is refused with the field named.
func TestAppliedRole(t *testing.T) {
	for _, role := range []string{"", RoleActive, RoleStandby} {
		a := &Applied{Version: Version, Generation: 1, Hash: "h", Time: "2026-01-01T00:00:00Z", Role: role}
		s, err := Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if role == "" && strings.Contains(s, "role") {
			t.Errorf("a report without a role mentions one: %s", s)
		}
		got, err := ParseApplied(s)
		if err != nil || got.Role != role {
			t.Errorf("role %q: parsed %+v, %v", role, got, err)
		}
	}
	_, err := ParseApplied(`{"version":"` + Version + `","generation":1,"hash":"h","time":"t","role":"leader"}`)
	if err == nil || !strings.Contains(err.Error(), `role: unsupported value "leader"`) {
		t.Errorf("role leader: %v", err)
	}
}

// TestDesiredReplicas: a desired state names 2-MaxReplicas replicas, or none (one replica).
func TestDesiredReplicas(t *testing.T) {
	for n, ok := range map[int]bool{0: true, 1: false, 2: true, MaxReplicas: true, MaxReplicas + 1: false, -1: false} {
		d := goodDesired()
		d.Replicas = n
		errs := ValidateDesired(d)
		if ok != (len(errs) == 0) {
			t.Errorf("replicas %d: %v", n, errs)
		}
		if !ok && (len(errs) != 1 || errs[0].Field != "replicas") {
			t.Errorf("replicas %d: want one error on the replicas field, got %v", n, errs)
		}
	}
}
