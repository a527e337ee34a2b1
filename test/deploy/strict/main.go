// Command strict decodes Kubernetes manifests (multi-document YAML on stdin) into the API's Go types with
// strict decoding, so an unknown or duplicated field — which the JSON-schema check lets through — is an
// error. Used by test/deploy/manifests.test.ts; built by scripts/k8s-strict.sh into .cache/.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/runtime/serializer"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
)

func main() {
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	reader := yamlutil.NewYAMLReader(bufio.NewReader(os.Stdin))
	failed := 0
	n := 0
	for {
		doc, err := reader.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "read: %v\n", err)
			os.Exit(2)
		}
		if len(bytes.TrimSpace(doc)) == 0 || isOnlyComments(doc) {
			continue
		}
		n++
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			failed++
			fmt.Printf("FAIL document %d: %v\n", n, err)
			continue
		}
		_ = obj
		fmt.Printf("ok %s %s\n", gvk.GroupVersion().String(), gvk.Kind)
	}
	if failed > 0 {
		os.Exit(1)
	}
}

func isOnlyComments(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return false
		}
	}
	return true
}
