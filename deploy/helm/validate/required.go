package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// required returns what the API server would reject in a strictly decoded object: missing required fields,
// malformed names and labels, and references inside the object that point at nothing.
func required(object any) []string {
	switch o := object.(type) {
	case *appsv1.DaemonSet:
		return append(checkMeta(o.ObjectMeta), checkDaemonSet(o)...)
	case *corev1.Pod:
		return append(checkMeta(o.ObjectMeta), prefix("spec", checkPodSpec(&o.Spec))...)
	case *corev1.Service:
		return append(checkMeta(o.ObjectMeta), checkService(o)...)
	case *corev1.ServiceAccount:
		return checkMeta(o.ObjectMeta)
	case *corev1.ConfigMap:
		return checkMeta(o.ObjectMeta)
	case *networkingv1.NetworkPolicy:
		return checkMeta(o.ObjectMeta)
	case *monitoringv1.ServiceMonitor:
		problems := checkMeta(o.ObjectMeta)
		if len(o.Spec.Endpoints) == 0 {
			problems = append(problems, "spec.endpoints is required")
		}
		return problems
	}
	return []string{fmt.Sprintf("no checks for %T", object)}
}

func prefix(path string, problems []string) []string {
	for i, p := range problems {
		problems[i] = path + "." + p
	}
	return problems
}

func checkMeta(meta metav1.ObjectMeta) []string {
	var problems []string
	if meta.Name == "" {
		problems = append(problems, "metadata.name is required")
	}
	for _, msg := range validation.IsDNS1123Subdomain(meta.Name) {
		problems = append(problems, "metadata.name: "+msg)
	}
	for key, value := range meta.Labels {
		for _, msg := range append(validation.IsQualifiedName(key), validation.IsValidLabelValue(value)...) {
			problems = append(problems, fmt.Sprintf("metadata.labels[%s]: %s", key, msg))
		}
	}
	return problems
}

func checkDaemonSet(ds *appsv1.DaemonSet) []string {
	var problems []string
	if ds.Spec.Selector == nil || len(ds.Spec.Selector.MatchLabels) == 0 {
		problems = append(problems, "spec.selector is required")
	} else {
		selector, err := metav1.LabelSelectorAsSelector(ds.Spec.Selector)
		if err != nil || !selector.Matches(labels.Set(ds.Spec.Template.Labels)) {
			problems = append(problems, "spec.selector does not match spec.template.metadata.labels")
		}
	}
	return append(problems, prefix("spec.template.spec", checkPodSpec(&ds.Spec.Template.Spec))...)
}

func checkPodSpec(spec *corev1.PodSpec) []string {
	var problems []string
	if len(spec.Containers) == 0 {
		problems = append(problems, "containers is required")
	}
	volumes := map[string]bool{}
	for i, volume := range spec.Volumes {
		volumes[volume.Name] = true
		if sources := countSources(volume.VolumeSource); sources != 1 {
			problems = append(problems, fmt.Sprintf("volumes[%d] (%s) has %d sources, needs exactly 1", i, volume.Name, sources))
		}
		if volume.HostPath != nil && !strings.HasPrefix(volume.HostPath.Path, "/") {
			problems = append(problems, fmt.Sprintf("volumes[%d].hostPath.path must be absolute", i))
		}
	}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for i := range all {
		problems = append(problems, prefix(fmt.Sprintf("containers[%s]", all[i].Name), checkContainer(&all[i], volumes))...)
	}
	return problems
}

// countSources counts the volume source fields that are set (the API allows exactly one).
func countSources(source corev1.VolumeSource) int {
	encoded, _ := json.Marshal(source)
	var fields map[string]any
	_ = json.Unmarshal(encoded, &fields)
	return len(fields)
}

var envReference = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func checkContainer(c *corev1.Container, volumes map[string]bool) []string {
	var problems []string
	for _, msg := range validation.IsDNS1123Label(c.Name) {
		problems = append(problems, "name: "+msg)
	}
	if c.Image == "" {
		problems = append(problems, "image is required")
	}
	ports := map[string]bool{}
	for _, port := range c.Ports {
		if port.ContainerPort < 1 || port.ContainerPort > 65535 {
			problems = append(problems, fmt.Sprintf("ports[%s].containerPort %d is out of range", port.Name, port.ContainerPort))
		}
		ports[port.Name] = true
	}
	for _, mount := range c.VolumeMounts {
		if !volumes[mount.Name] {
			problems = append(problems, fmt.Sprintf("volumeMounts: no volume named %q", mount.Name))
		}
		if !strings.HasPrefix(mount.MountPath, "/") {
			problems = append(problems, fmt.Sprintf("volumeMounts[%s].mountPath must be absolute", mount.Name))
		}
	}
	for name, probe := range map[string]*corev1.Probe{"startupProbe": c.StartupProbe, "readinessProbe": c.ReadinessProbe, "livenessProbe": c.LivenessProbe} {
		if probe != nil && probe.HTTPGet != nil && probe.HTTPGet.Port.StrVal != "" && !ports[probe.HTTPGet.Port.StrVal] {
			problems = append(problems, fmt.Sprintf("%s names port %q, which the container does not declare", name, probe.HTTPGet.Port.StrVal))
		}
	}
	env := map[string]bool{}
	for _, variable := range c.Env {
		env[variable.Name] = true
	}
	for _, arg := range append(append([]string{}, c.Command...), c.Args...) {
		for _, match := range envReference.FindAllStringSubmatch(arg, -1) {
			if !env[match[1]] {
				problems = append(problems, fmt.Sprintf("args: $(%s) is not in env", match[1]))
			}
		}
	}
	return problems
}

func checkService(s *corev1.Service) []string {
	var problems []string
	headless := s.Spec.ClusterIP == corev1.ClusterIPNone
	if len(s.Spec.Ports) == 0 && !headless {
		problems = append(problems, "spec.ports is required")
	}
	for i, port := range s.Spec.Ports {
		if port.Port < 1 || port.Port > 65535 {
			problems = append(problems, fmt.Sprintf("spec.ports[%d].port is required", i))
		}
		if port.NodePort != 0 && (s.Spec.Type != corev1.ServiceTypeNodePort || port.NodePort < 30000 || port.NodePort > 32767) {
			problems = append(problems, fmt.Sprintf("spec.ports[%d].nodePort %d is not allowed here", i, port.NodePort))
		}
		if len(s.Spec.Ports) > 1 && port.Name == "" {
			problems = append(problems, fmt.Sprintf("spec.ports[%d].name is required with several ports", i))
		}
	}
	if s.Spec.InternalTrafficPolicy != nil && s.Spec.TrafficDistribution != nil {
		problems = append(problems, "spec sets both internalTrafficPolicy and trafficDistribution")
	}
	return problems
}
