package annotations

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// bigDesired is a valid desired state with n port forwards over 200 EIPs.
func bigDesired(n int) *Desired {
	d := &Desired{Version: Version, Gateway: "ngw", Generation: 7,
		External: ExternalNIC{IfName: "net1", Master: "eth1", Mode: "bridge", MAC: "02:c8:ca:97:ff:41"},
		Subnets: []SubnetNIC{{Subnet: "sn", IfName: "vpc-2010c9e0d4e", CIDR: "10.0.0.0/16", IP: "10.0.0.1",
			Addresses: []string{"10.0.0.1/16"}, Attachment: Attachment{Type: AttachBridge, Bridge: "br-sn", HostIfName: "vnat994b11266d6"}}}}
	for e := range 200 {
		d.EIPs = append(d.EIPs, EIP{EipCIDR: fmt.Sprintf("192.168.%d.%d/16", e/250, 1+e%250), Gateway: "192.168.255.254"})
	}
	for i := range n {
		eip := d.EIPs[i%200].EipCIDR
		d.DNATs = append(d.DNATs, DNAT{EIP: eip[:strings.IndexByte(eip, '/')], Protocol: "tcp", ExternalPort: 10000 + i/200,
			InternalIP: fmt.Sprintf("10.0.%d.%d", 1+i%200, 2+i%250), InternalPort: 80})
	}
	return d
}

// TestEncodeDesiredFits: 10 000 rules fit in a pod's 256 KiB of annotations once compressed,
// and come back identical; a small state stays plain JSON (readable by humans).
func TestEncodeDesiredFits(t *testing.T) {
	small, err := EncodeDesired(bigDesired(1))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(small, `"encoding"`) {
		t.Errorf("a small desired state was compressed: %.80s", small)
	}
	d := bigDesired(10000)
	s, err := EncodeDesired(d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(s, `"encoding":"gzip"`) || len(s) > MaxTotalSize/2 {
		t.Errorf("10 000 rules encode to %d bytes (want compressed and under %d)", len(s), MaxTotalSize/2)
	}
	t.Logf("10 000 rules: %d bytes in the annotation", len(s))
	got, err := ParseDesired(s)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Error("compressed round trip changed the desired state")
	}
}

func gz(t *testing.T, data string) string {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(data))
	w.Close()
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

// TestCompressedRefuses: a bad envelope is refused naming what is wrong, and the content is
// validated like a plain annotation.
func TestCompressedRefuses(t *testing.T) {
	bad := `{"version":"v1","gateway":"ngw","generation":1}` // no external NIC, no subnets
	bomb := strings.Repeat(" ", maxInflated+10)
	for name, c := range map[string]struct{ doc, want string }{
		"wrong version":  {`{"version":"v2","generation":1,"encoding":"gzip","data":""}`, `version "v2"`},
		"wrong encoding": {`{"version":"v1","generation":1,"encoding":"zstd","data":""}`, `encoding "zstd"`},
		"bad base64":     {`{"version":"v1","generation":1,"encoding":"gzip","data":"%%%"}`, "base64"},
		"not gzip":       {`{"version":"v1","generation":1,"encoding":"gzip","data":"aGVsbG8="}`, "gzip"},
		"unknown field":  {`{"version":"v1","generation":1,"encoding":"gzip","data":"","extra":1}`, "extra"},
		"invalid inside": {`{"version":"v1","generation":1,"encoding":"gzip","data":"` + gz(t, bad) + `"}`, "external"},
		"gzip bomb":      {`{"version":"v1","generation":1,"encoding":"gzip","data":"` + gz(t, bomb) + `"}`, "inflates to more than"},
	} {
		_, err := ParseDesired(c.doc)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), DesiredKey) {
			t.Errorf("%s: error %v, want one naming %s and %q", name, err, DesiredKey, c.want)
		}
	}
}
