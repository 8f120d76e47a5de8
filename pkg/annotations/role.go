package annotations

import "fmt"

// Roles of a replica of a replicated gateway in Applied.Role.
const (
	RoleActive  = "active"
	RoleStandby = "standby"
)

func validateRole(r string) error {
	switch r {
	case "", RoleActive, RoleStandby:
		return nil
	}
	return fmt.Errorf("role: unsupported value %q: must be %q, %q or absent", r, RoleActive, RoleStandby)
}
