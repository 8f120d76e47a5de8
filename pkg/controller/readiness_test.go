package controller

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// lease is a leaseView as the elector reports it: the holder last read, and this process's id.
type lease struct{ holder, self string }

func (l lease) GetLeader() string { return l.holder }
func (l lease) IsLeader() bool    { return l.holder != "" && l.holder == l.self }

// TestReadiness: every state a replica can be in, through the HTTP handler the binary serves.
// test/controller TestReadyz checks the same with the binary against a real API server.
func TestReadiness(t *testing.T) {
	for _, tc := range []struct {
		name     string
		electing bool
		lease    *lease // nil: RunAsLeader has not started
		working  bool
		code     int
		body     string
	}{
		{"no election, caches not synced", false, nil, false, http.StatusServiceUnavailable, "informer caches not synced"},
		{"no election, working", false, nil, true, http.StatusOK, "ok"},
		{"election not started", true, nil, false, http.StatusServiceUnavailable, "the Lease not read yet"},
		{"Lease not read yet", true, &lease{"", "me"}, false, http.StatusServiceUnavailable, "the Lease not read yet"},
		{"leader, caches not synced", true, &lease{"me", "me"}, false, http.StatusServiceUnavailable, "leader: informer caches not synced"},
		{"leader, working", true, &lease{"me", "me"}, true, http.StatusOK, "ok: leader"},
		{"standby", true, &lease{"other", "me"}, false, http.StatusOK, "ok: standby, the Lease is held by other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &Readiness{working: func() bool { return tc.working }, electing: tc.electing}
			if tc.lease != nil {
				r.setLease(*tc.lease)
			}
			w := httptest.NewRecorder()
			r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.body) {
				t.Errorf("got %d %q, want %d with %q", w.Code, w.Body.String(), tc.code, tc.body)
			}
		})
	}
}
