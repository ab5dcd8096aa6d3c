package main

import (
	"encoding/json"
	"fmt"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// typed returns an empty object of the Go type for apiVersion/kind, or nil when none is known here.
func typed(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Pod":
		return &corev1.Pod{}
	case "apps/v1/DaemonSet":
		return &appsv1.DaemonSet{}
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "monitoring.coreos.com/v1/ServiceMonitor":
		return &monitoringv1.ServiceMonitor{}
	}
	return nil
}

// customResources are kinds whose Go types are not vendored here: decoded loosely, their required fields checked.
var customResources = map[string][]string{
	"grafana.integreatly.org/v1beta1/GrafanaDashboard": {"spec", "spec.instanceSelector", "spec.json"},
	"autoscaling.k8s.io/v1/VerticalPodAutoscaler":      {"spec", "spec.targetRef"},
}

// validateDocument decodes one document strictly and returns its problems.
func validateDocument(doc []byte) []string {
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return []string{err.Error()}
	}
	what := fmt.Sprintf("%s %s", meta.APIVersion, meta.Kind)
	if fields, ok := customResources[meta.APIVersion+"/"+meta.Kind]; ok {
		return checkCustomResource(doc, fields)
	}
	object := typed(meta.APIVersion, meta.Kind)
	if object == nil {
		return []string{fmt.Sprintf("%s: no API type known for it", what)}
	}
	if err := yaml.UnmarshalStrict(doc, object); err != nil {
		return []string{fmt.Sprintf("%s: %v", what, err)}
	}
	var problems []string
	for _, p := range required(object) {
		problems = append(problems, fmt.Sprintf("%s: %s", what, p))
	}
	return problems
}

// checkCustomResource checks metadata.name and the given dotted paths of a custom resource.
func checkCustomResource(doc []byte, fields []string) []string {
	var object map[string]any
	if err := yaml.Unmarshal(doc, &object); err != nil {
		return []string{err.Error()}
	}
	var problems []string
	meta, _ := object["metadata"].(map[string]any)
	if name, _ := meta["name"].(string); name == "" {
		problems = append(problems, "metadata.name is required")
	}
	for _, path := range fields {
		if lookup(object, path) == nil {
			problems = append(problems, path+" is required")
		}
	}
	if text, ok := lookup(object, "spec.json").(string); ok && !json.Valid([]byte(text)) {
		problems = append(problems, "spec.json is not JSON")
	}
	return problems
}

func lookup(object map[string]any, path string) any {
	var current any = object
	start := 0
	for i := 0; i <= len(path); i++ {
		if i == len(path) || path[i] == '.' {
			m, ok := current.(map[string]any)
			if !ok {
				return nil
			}
			current = m[path[start:i]]
			start = i + 1
		}
	}
	return current
}
