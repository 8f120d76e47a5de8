package plan

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	serializerjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// LoadFile reads a multi-document YAML file holding one VpcNatGateway, its Vpc and Subnets, and
// optionally the ConfigMap, as a user would kubectl-apply them. Decoding is strict: an unknown
// field or kind is an error naming the document (1-based) and kind, never silently dropped.
// Whether the objects make a valid gateway is Build's question.
//
// Without a ConfigMap in the file the gateway is enabled with no nic: a file is applied on
// purpose and has no cluster-wide switch to consult, and the caller (vpcnat-daemon apply
// --master) names the node NIC. A ConfigMap in the file is taken as it is, "false" included.
func LoadFile(path string) (Inputs, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Inputs{}, fmt.Errorf("reading gateway spec: %w", err)
	}
	in, err := decode(data)
	if err != nil {
		return Inputs{}, fmt.Errorf("%s: %w", path, err)
	}
	return in, nil
}

func decode(data []byte) (Inputs, error) {
	var in Inputs
	haveConfig := false
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for n := 1; ; n++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Inputs{}, fmt.Errorf("document %d: %w", n, err)
		}
		kind, err := kindOf(doc)
		if err != nil {
			return Inputs{}, fmt.Errorf("document %d: %w", n, err)
		}
		if kind == (metav1.TypeMeta{}) {
			continue // empty, or comments only
		}
		if err := in.add(kind, doc, &haveConfig); err != nil {
			return Inputs{}, fmt.Errorf("document %d (%s): %w", n, kind.Kind, err)
		}
	}
	if in.Gateway == nil {
		return Inputs{}, errors.New("no VpcNatGateway (kubeovn.io/v1) in the file")
	}
	if !haveConfig {
		in.Config = Config{Enabled: true, Dataplane: DefaultDataplane}
	}
	return in, nil
}

// kindOf reads a document's apiVersion and kind; zero for an empty document.
func kindOf(doc []byte) (metav1.TypeMeta, error) {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return metav1.TypeMeta{}, fmt.Errorf("invalid YAML: %w", err)
	}
	if string(bytes.TrimSpace(j)) == "null" {
		return metav1.TypeMeta{}, nil
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(j, &tm); err != nil {
		return metav1.TypeMeta{}, fmt.Errorf("not a Kubernetes object: %w", err)
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		return metav1.TypeMeta{}, fmt.Errorf("apiVersion and kind are required (got %q, %q)", tm.APIVersion, tm.Kind)
	}
	return tm, nil
}

func (in *Inputs) add(kind metav1.TypeMeta, doc []byte, haveConfig *bool) error {
	kubeovn := v1.SchemeGroupVersion.String()
	switch {
	case kind.APIVersion == kubeovn && kind.Kind == "VpcNatGateway":
		if in.Gateway != nil {
			return fmt.Errorf("a second VpcNatGateway: a file holds one gateway (%s is the first)", in.Gateway.Name)
		}
		in.Gateway = &v1.VpcNatGateway{}
		return strict(doc, in.Gateway)
	case kind.APIVersion == kubeovn && kind.Kind == "Vpc":
		if in.Vpc != nil {
			return fmt.Errorf("a second Vpc: a file holds the gateway's Vpc only (%s is the first)", in.Vpc.Name)
		}
		in.Vpc = &v1.Vpc{}
		return strict(doc, in.Vpc)
	case kind.APIVersion == kubeovn && kind.Kind == "Subnet":
		s := &v1.Subnet{}
		in.Subnets = append(in.Subnets, s)
		return strict(doc, s)
	case kind.APIVersion == "v1" && kind.Kind == "ConfigMap":
		if *haveConfig {
			return errors.New("a second ConfigMap")
		}
		if err := stringData(doc); err != nil {
			return err
		}
		var cm corev1.ConfigMap
		if err := strict(doc, &cm); err != nil {
			return err
		}
		if cm.Namespace != ConfigMapNamespace || cm.Name != ConfigMapName {
			return fmt.Errorf("ConfigMap %s/%s: the only ConfigMap a gateway reads is %s/%s", cm.Namespace, cm.Name, ConfigMapNamespace, ConfigMapName)
		}
		c, errs := ParseConfig(cm.Data)
		if len(errs) > 0 {
			return errs.ToAggregate()
		}
		in.Config, *haveConfig = c, true
		return nil
	}
	return fmt.Errorf("kind %s of apiVersion %s is not supported: a file holds a VpcNatGateway, its Vpc and Subnets (%s) and optionally the ConfigMap %s/%s (v1)",
		kind.Kind, kind.APIVersion, kubeovn, ConfigMapNamespace, ConfigMapName)
}

// decoder decodes the way the API server does with strict field validation: field names are
// case-sensitive, and unknown or duplicate fields are errors. A typo such as "eipCidr" must fail
// loudly rather than leave the EIP out, and a file the API server would refuse (the seed's
// unquoted "enable-vpc-nat-gw: true") must not pass here.
var decoder = func() *serializerjson.Serializer {
	scheme := runtime.NewScheme()
	utilruntime.Must(v1.AddToScheme(scheme))
	utilruntime.Must(corev1.AddToScheme(scheme))
	return serializerjson.NewSerializerWithOptions(serializerjson.DefaultMetaFactory, scheme, scheme,
		serializerjson.SerializerOptions{Yaml: true, Strict: true})
}()

// stringData names a ConfigMap data value that is not a string (the seed's bare
// "enable-vpc-nat-gw: true"), which the strict decoder reports without its key or value.
func stringData(doc []byte) error {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil // the strict decode reports it
	}
	var cm struct {
		Data map[string]json.RawMessage `json:"data"`
	}
	if json.Unmarshal(j, &cm) != nil {
		return nil
	}
	var errs []error
	for k, v := range cm.Data {
		if len(v) == 0 || v[0] == '"' || string(v) == "null" {
			continue
		}
		shown := string(v)
		if len(shown) > 64 {
			shown = shown[:64] + "..."
		}
		errs = append(errs, fmt.Errorf("configmap.data[%s]: Invalid value: %s: ConfigMap data are strings: quote it", k, shown))
	}
	if len(errs) > 1 {
		slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	}
	return errors.Join(errs...)
}

func strict(doc []byte, into runtime.Object) error {
	if _, _, err := decoder.Decode(doc, nil, into); err != nil {
		return fmt.Errorf("decoding: %w", err)
	}
	return nil
}
