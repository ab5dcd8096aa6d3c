// Command validate checks rendered Kubernetes manifests offline: every document is decoded strictly into its
// Kubernetes API type (k8s.io/api, or the Prometheus operator's for ServiceMonitor), so an unknown or misspelt
// field or a value of the wrong type is an error, and then checked for what the API server requires (names,
// containers with images, volumes that mounts refer to, ports that probes name, selectors that match).
//
//	go run . rendered.yaml...     exit 0 when every object is valid; otherwise one line per problem, exit 1
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: validate rendered.yaml...")
		os.Exit(2)
	}
	problems := 0
	objects := 0
	for _, file := range os.Args[1:] {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		docs, err := documents(data)
		if err != nil {
			fmt.Printf("%s: %v\n", file, err)
			problems++
			continue
		}
		for i, doc := range docs {
			objects++
			for _, problem := range validateDocument(doc) {
				fmt.Printf("%s: document %d: %s\n", file, i+1, problem)
				problems++
			}
		}
	}
	if problems > 0 {
		os.Exit(1)
	}
	fmt.Printf("%d objects valid\n", objects)
}

// documents splits a multi-document YAML stream, dropping empty documents (comments only).
func documents(data []byte) ([][]byte, error) {
	reader := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		var probe map[string]any
		if err := yaml.Unmarshal(doc, &probe); err != nil {
			return nil, err
		}
		if len(probe) > 0 {
			docs = append(docs, doc)
		}
	}
}
