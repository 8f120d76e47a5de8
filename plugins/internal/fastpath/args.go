package fastpath

import (
	"errors"
	"strconv"
	"strings"
)

// Args are the CNI_ARGS containerd and CRI-O pass for a Kubernetes pod.
type Args struct {
	IgnoreUnknown    bool
	PodNamespace     string // K8S_POD_NAMESPACE
	PodName          string // K8S_POD_NAME
	PodUID           string // K8S_POD_UID
	InfraContainerID string // K8S_POD_INFRA_CONTAINER_ID
}

// ParseArgs parses CNI_ARGS ("K=V;K2=V2") with the rules of the CNI library's types.LoadArgs
// for a struct of these fields: every pair must hold exactly one '='; a key seen twice keeps its
// last value; an unknown key is an error unless IgnoreUnknown is true ("1"/"true", any case).
func ParseArgs(s string) (*Args, error) {
	a := &Args{}
	if s == "" {
		return a, nil
	}
	var unknown []string
	for _, pair := range strings.Split(s, ";") {
		kv := strings.Split(pair, "=")
		if len(kv) != 2 {
			return nil, errors.New("vpcnat: CNI_ARGS: invalid pair " + strconv.Quote(pair))
		}
		switch k, v := kv[0], kv[1]; k {
		case "IgnoreUnknown":
			switch strings.ToLower(v) {
			case "1", "true":
				a.IgnoreUnknown = true
			case "0", "false":
				a.IgnoreUnknown = false
			default:
				return nil, errors.New("vpcnat: CNI_ARGS: IgnoreUnknown: " + strconv.Quote(v) + " is not a boolean")
			}
		case "K8S_POD_NAMESPACE":
			a.PodNamespace = v
		case "K8S_POD_NAME":
			a.PodName = v
		case "K8S_POD_UID":
			a.PodUID = v
		case "K8S_POD_INFRA_CONTAINER_ID":
			a.InfraContainerID = v
		default:
			unknown = append(unknown, pair)
		}
	}
	if len(unknown) > 0 && !a.IgnoreUnknown {
		quoted := make([]string, len(unknown))
		for i, u := range unknown {
			quoted[i] = strconv.Quote(u)
		}
		return nil, errors.New("vpcnat: CNI_ARGS: unknown args [" + strings.Join(quoted, " ") + "]")
	}
	return a, nil
}

// RecordKey names the pod's attachment record: its UID, or namespace_name when the runtime does
// not pass the UID.
func (a *Args) RecordKey() string {
	if a.PodUID != "" {
		return a.PodUID
	}
	return a.PodNamespace + "_" + a.PodName
}
