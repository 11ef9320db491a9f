// Package helm tests the Firehose chart: it renders it with Helm's own
// engine, decodes every object strictly into the Kubernetes (and KEDA and
// Prometheus Operator) API types, and checks what running it relies on.
// It is a module of its own, so that Helm's and Kubernetes' dependencies
// stay out of Firehose's; make test runs it.
package helm

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"go.yaml.in/yaml/v3"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/firehose/firehose/config"
	"github.com/firehose/firehose/connectors/destinations"
	"github.com/firehose/firehose/topology"
)

const chartDir = "firehose"

// rendered is a rendered release: its objects by kind and name, and the
// values it was rendered with.
type rendered struct {
	objects map[string]map[string]any // kind → name → typed object
	values  map[string]any
}

func (r rendered) get(t *testing.T, kind, name string) any {
	t.Helper()
	o, ok := r.objects[kind][name]
	if !ok {
		t.Fatalf("no %s %s; rendered %s: %v", kind, name, kind, keys(r.objects[kind]))
	}
	return o
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// types are the API types each kind decodes into, strictly.
var types = map[string]func() any{
	"v1/ConfigMap":                            func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                               func() any { return &corev1.Secret{} },
	"v1/Service":                              func() any { return &corev1.Service{} },
	"apps/v1/Deployment":                      func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                     func() any { return &appsv1.StatefulSet{} },
	"batch/v1/Job":                            func() any { return &batchv1.Job{} },
	"policy/v1/PodDisruptionBudget":           func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":      func() any { return &networkingv1.NetworkPolicy{} },
	"keda.sh/v1alpha1/ScaledObject":           func() any { return &kedav1alpha1.ScaledObject{} },
	"monitoring.coreos.com/v1/PodMonitor":     func() any { return &monitoringv1.PodMonitor{} },
	"monitoring.coreos.com/v1/PrometheusRule": func() any { return &monitoringv1.PrometheusRule{} },
}

// render renders the chart as `helm install fh` would with the given
// values file ("" for the defaults), lints it, and decodes every object.
func render(t *testing.T, valuesFile string) rendered {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	user := map[string]any{}
	if valuesFile != "" {
		if user, err = chartutil.ReadValuesFile(valuesFile); err != nil {
			t.Fatal(err)
		}
	}
	lr := lint.AllWithKubeVersion(chartDir, user, "data", nil)
	for _, m := range lr.Messages {
		if m.Severity >= support.WarningSev {
			t.Errorf("helm lint: %s", m)
		}
	}
	vals, err := chartutil.ToRenderValues(ch, user, chartutil.ReleaseOptions{Name: "fh", Namespace: "data", IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		t.Fatal(err)
	}
	out, err := engine.Engine{Strict: true, LintMode: false}.Render(ch, vals)
	if err != nil {
		t.Fatal(err)
	}
	r := rendered{objects: map[string]map[string]any{}, values: vals["Values"].(chartutil.Values)}
	for _, name := range keys(out) {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(out[name], -1) {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			var head struct{ APIVersion, Kind string }
			if err := sigsyaml.Unmarshal([]byte(doc), &head); err != nil {
				t.Fatalf("%s: %v\n%s", name, err, doc)
			}
			newT, ok := types[head.APIVersion+"/"+head.Kind]
			if !ok {
				t.Fatalf("%s renders a %s %s, which the test has no type for", name, head.APIVersion, head.Kind)
			}
			js, err := sigsyaml.YAMLToJSON([]byte(doc))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			obj := newT()
			dec := json.NewDecoder(bytes.NewReader(js))
			dec.DisallowUnknownFields()
			if err := dec.Decode(obj); err != nil {
				t.Fatalf("%s: a %s does not decode strictly: %v\n%s", name, head.Kind, err, doc)
			}
			meta := reflect.ValueOf(obj).Elem().FieldByName("ObjectMeta").Interface()
			objName := reflect.ValueOf(meta).FieldByName("Name").String()
			if r.objects[head.Kind] == nil {
				r.objects[head.Kind] = map[string]any{}
			}
			if _, dup := r.objects[head.Kind][objName]; dup {
				t.Fatalf("two %s named %s", head.Kind, objName)
			}
			r.objects[head.Kind][objName] = obj
		}
	}
	return r
}

// pod checks what every Firehose pod needs and returns its container:
// probes on the admin port, that port listened on, a grace period longer
// than the shutdown timeout, the config mounted.
func pod(t *testing.T, what string, spec corev1.PodSpec) corev1.Container {
	t.Helper()
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers", what, len(spec.Containers))
	}
	c := spec.Containers[0]
	args := strings.Join(c.Args, " ")
	if !strings.Contains(args, "--admin-listen 0.0.0.0:9090") || !strings.Contains(args, "--listen 0.0.0.0:8080") || !strings.HasPrefix(args, "run -c /etc/firehose/firehose.yaml") {
		t.Errorf("%s: args %q", what, args)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port.String() != "admin" {
		t.Errorf("%s: readiness probe %+v, want /readyz on admin", what, c.ReadinessProbe)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.LivenessProbe.HTTPGet.Port.String() != "admin" {
		t.Errorf("%s: liveness probe %+v, want /healthz on admin", what, c.LivenessProbe)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["admin"] != 9090 || ports["http"] != 8080 {
		t.Errorf("%s: ports %v", what, ports)
	}
	m := regexp.MustCompile(`--shutdown-timeout (\d+)s`).FindStringSubmatch(args)
	if m == nil {
		t.Fatalf("%s: no --shutdown-timeout in %q", what, args)
	}
	shutdown, _ := strconv.Atoi(m[1])
	if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds <= int64(shutdown)+5 {
		t.Errorf("%s: terminationGracePeriodSeconds %v is not above the %ds shutdown timeout plus the 5s exit margin", what, spec.TerminationGracePeriodSeconds, shutdown)
	}
	if len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/etc/firehose" || spec.Volumes[0].ConfigMap == nil || spec.Volumes[0].ConfigMap.Name != "fh-firehose-config" {
		t.Errorf("%s: config not mounted from fh-firehose-config: %+v %+v", what, c.VolumeMounts, spec.Volumes)
	}
	if spec.SecurityContext == nil || spec.SecurityContext.RunAsNonRoot == nil || !*spec.SecurityContext.RunAsNonRoot {
		t.Errorf("%s: not run as non-root", what)
	}
	return c
}

// secretsOf lists the Secrets a container's environment comes from.
func secretsOf(c corev1.Container) []string {
	var out []string
	for _, e := range c.EnvFrom {
		if e.SecretRef != nil {
			out = append(out, e.SecretRef.Name)
		}
	}
	return out
}

// pdbCovers asserts that a PodDisruptionBudget of that name selects the
// pods of a workload.
func pdbCovers(t *testing.T, r rendered, name string, podLabels map[string]string) {
	t.Helper()
	pdb := r.get(t, "PodDisruptionBudget", name).(*policyv1.PodDisruptionBudget)
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PDB %s: maxUnavailable %v", name, pdb.Spec.MaxUnavailable)
	}
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if podLabels[k] != v {
			t.Errorf("PDB %s selects %s=%s; the pods have %v", name, k, v, podLabels)
		}
	}
}

// loadAs loads the rendered config as the process with that scope does,
// with only the given environment.
func loadAs(t *testing.T, r rendered, scope *config.Scope, env map[string]string) (*config.Config, error) {
	t.Helper()
	cm := r.get(t, "ConfigMap", "fh-firehose-config").(*corev1.ConfigMap)
	return config.Parse("firehose.yaml", []byte(cm.Data["firehose.yaml"]), config.Options{
		Lookup: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Scope:  scope,
	})
}

// envOf is the environment the named Secrets give, as the values set them.
func envOf(r rendered, secrets ...string) map[string]string {
	env := map[string]string{}
	for _, name := range secrets {
		if s, ok := r.objects["Secret"][name]; ok {
			for k, v := range s.(*corev1.Secret).StringData {
				env[k] = v
			}
		}
	}
	return env
}

func TestDefaultValues(t *testing.T) {
	r := render(t, "")
	sts := r.get(t, "StatefulSet", "fh-firehose-processor").(*appsv1.StatefulSet)
	c := pod(t, "processor", sts.Spec.Template.Spec)
	if args := strings.Join(c.Args, " "); !strings.Contains(args, "--role processor --instance-id $(POD_NAME)") {
		t.Errorf("processor args %q", args)
	}
	if got := r.objects["Deployment"]; len(got) != 0 {
		t.Errorf("deployments %v without connectors or API tokens", keys(got))
	}
	if _, err := loadAs(t, r, &config.Scope{Processor: true, Connectors: []string{}}, nil); err != nil {
		t.Errorf("the default config does not load: %v", err)
	}
	// The admin port (/metrics, pprof) takes traffic only from the
	// monitoring namespace; every Firehose pod is selected.
	np := r.get(t, "NetworkPolicy", "fh-firehose").(*networkingv1.NetworkPolicy)
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 1 || np.Spec.Ingress[0].Ports[0].Port.IntValue() != 9090 ||
		np.Spec.Ingress[0].From[0].NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"] != "monitoring" {
		t.Errorf("admin NetworkPolicy %+v", np.Spec)
	}
	for k, v := range np.Spec.PodSelector.MatchLabels {
		if sts.Spec.Template.Labels[k] != v {
			t.Errorf("the NetworkPolicy selects %s=%s; the processor's pods have %v", k, v, sts.Spec.Template.Labels)
		}
	}
	job := r.get(t, "Job", "fh-firehose-topology").(*batchv1.Job)
	if job.Annotations["helm.sh/hook"] != "pre-install,pre-upgrade" || strings.Join(job.Spec.Template.Spec.Containers[0].Args, " ") != "topology apply -c /etc/firehose/firehose.yaml" {
		t.Errorf("topology job: %v %v", job.Annotations, job.Spec.Template.Spec.Containers[0].Args)
	}
}

func TestMultiConnectorValues(t *testing.T) {
	r := render(t, chartDir+"/ci/multi-connector-values.yaml")

	// The processor: a StatefulSet with its headless Service, so pod
	// names, transactional ids and static member ids survive restarts.
	sts := r.get(t, "StatefulSet", "fh-firehose-processor").(*appsv1.StatefulSet)
	headless := r.get(t, "Service", sts.Spec.ServiceName).(*corev1.Service)
	if headless.Spec.ClusterIP != "None" {
		t.Errorf("the StatefulSet's service %s is not headless", headless.Name)
	}
	pc := pod(t, "processor", sts.Spec.Template.Spec)
	if !slices.Equal(secretsOf(pc), []string{"fh-firehose-common", "fh-firehose-processor"}) {
		t.Errorf("processor secrets %v", secretsOf(pc))
	}
	if pc.Env[0].Name != "POD_NAME" || pc.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Errorf("POD_NAME for --instance-id: %+v", pc.Env)
	}
	pdbCovers(t, r, "fh-firehose-processor", sts.Spec.Template.Labels)
	if _, err := loadAs(t, r, &config.Scope{Processor: true, Connectors: []string{}}, envOf(r, secretsOf(pc)...)); err != nil {
		t.Errorf("the processor's config does not load with its environment: %v", err)
	}

	// One Deployment per enabled connector, with its own secrets only,
	// and enough of them: the config loads for that connector alone.
	cfg, err := loadAs(t, r, nil, map[string]string{"KAFKA_PASSWORD": "x", "S3_SECRET": "x", "CRM_TOKEN": "x", "FIREHOSE_POSITION_KEY": strings.Repeat("k", 32)})
	if err != nil {
		t.Fatal(err)
	}
	maxEvents := map[string]int{"archive": 50000, "crm": destinations.All["http"].Batch.MaxEvents, "stream": destinations.All["kinesis"].Batch.MaxEvents}
	for _, cn := range cfg.Connectors {
		name := "fh-firehose-connector-" + cn.Name
		if !cn.IsEnabled() {
			if _, ok := r.objects["Deployment"][name]; ok {
				t.Errorf("disabled connector %s has a Deployment", cn.Name)
			}
			continue
		}
		d := r.get(t, "Deployment", name).(*appsv1.Deployment)
		c := pod(t, name, d.Spec.Template.Spec)
		if args := strings.Join(c.Args, " "); !strings.HasSuffix(args, "--role connector --connector "+cn.Name) {
			t.Errorf("%s: args %q", name, args)
		}
		own := "fh-firehose-connector-" + cn.Name
		if cn.Name == "archive" {
			own = "archive-credentials" // existingSecrets
		}
		if got := secretsOf(c); !slices.Equal(got, []string{"fh-firehose-common", own}) {
			t.Errorf("%s: secrets %v, want the common one and %s", name, got, own)
		}
		env := envOf(r, secretsOf(c)...)
		if cn.Name == "archive" {
			env["S3_SECRET"] = "from archive-credentials"
		}
		if _, err := loadAs(t, r, &config.Scope{Connectors: []string{cn.Name}}, env); err != nil {
			t.Errorf("%s: its config does not load with its own environment: %v", name, err)
		}
		pdbCovers(t, r, name, d.Spec.Template.Labels)

		// Autoscaled on its group's lag: the Deployment leaves replicas to
		// KEDA, and the threshold follows the batch size.
		if d.Spec.Replicas != nil {
			t.Errorf("%s: replicas %d set although KEDA scales it", name, *d.Spec.Replicas)
		}
		so := r.get(t, "ScaledObject", name).(*kedav1alpha1.ScaledObject)
		trig := so.Spec.Triggers[0]
		if so.Spec.ScaleTargetRef.Name != name || trig.Type != "kafka" || trig.Metadata["consumerGroup"] != cn.Group || trig.Metadata["topic"] != cn.Topic ||
			trig.Metadata["bootstrapServers"] != "kafka-0.kafka:9092,kafka-1.kafka:9092" || trig.AuthenticationRef == nil || trig.AuthenticationRef.Name != "kafka-scram" {
			t.Errorf("%s: scaled object %+v", name, so.Spec)
		}
		if want := strconv.Itoa(2 * maxEvents[cn.Name]); trig.Metadata["lagThreshold"] != want {
			t.Errorf("%s: lagThreshold %s, want 2 x batch.max_events = %s", name, trig.Metadata["lagThreshold"], want)
		}
		if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount != 12 {
			t.Errorf("%s: maxReplicaCount %v, want the events topic's 12 partitions", name, so.Spec.MaxReplicaCount)
		}
	}
	if n := len(r.objects["ScaledObject"]); n != 3 {
		t.Errorf("%d scaled objects, want one per enabled connector (3)", n)
	}
	archive := r.get(t, "Deployment", "fh-firehose-connector-archive").(*appsv1.Deployment)
	if q := archive.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]; q.String() != "500m" {
		t.Errorf("connectorOverrides not applied: cpu request %s", q.String())
	}
	crm := r.get(t, "Secret", "fh-firehose-connector-crm").(*corev1.Secret)
	if !reflect.DeepEqual(crm.StringData, map[string]string{"CRM_TOKEN": "crm-token"}) {
		t.Errorf("crm's secret holds %v", crm.StringData)
	}

	// The pull API: Deployment, Service on its port, PDB.
	api := r.get(t, "Deployment", "fh-firehose-api").(*appsv1.Deployment)
	ac := pod(t, "api", api.Spec.Template.Spec)
	if !strings.HasSuffix(strings.Join(ac.Args, " "), "--role api") {
		t.Errorf("api args %v", ac.Args)
	}
	svc := r.get(t, "Service", "fh-firehose-api").(*corev1.Service)
	if svc.Spec.Ports[0].TargetPort.String() != "http" || svc.Spec.Selector["app.kubernetes.io/component"] != "api" {
		t.Errorf("api service %+v", svc.Spec)
	}
	pdbCovers(t, r, "fh-firehose-api", api.Spec.Template.Labels)
	if _, err := loadAs(t, r, &config.Scope{API: true, Connectors: []string{}}, envOf(r, secretsOf(ac)...)); err != nil {
		t.Errorf("the API's config does not load with its environment: %v", err)
	}

	// The topology hook runs before the release's objects exist: its
	// config and environment are hooks too, created before it.
	job := r.get(t, "Job", "fh-firehose-topology").(*batchv1.Job)
	jcm := r.get(t, "ConfigMap", "fh-firehose-topology").(*corev1.ConfigMap)
	jsec := r.get(t, "Secret", "fh-firehose-topology").(*corev1.Secret)
	for _, o := range []map[string]string{jcm.Annotations, jsec.Annotations} {
		w, _ := strconv.Atoi(o["helm.sh/hook-weight"])
		jw, _ := strconv.Atoi(job.Annotations["helm.sh/hook-weight"])
		if o["helm.sh/hook"] != job.Annotations["helm.sh/hook"] || w >= jw {
			t.Errorf("the job's config and secret are not hooks created before it: %v vs %v", o, job.Annotations)
		}
	}
	if jcm.Data["firehose.yaml"] != r.get(t, "ConfigMap", "fh-firehose-config").(*corev1.ConfigMap).Data["firehose.yaml"] {
		t.Error("the topology job's config differs from the processes'")
	}
	if _, err := loadAs(t, r, &config.Scope{Connectors: []string{}}, jsec.StringData); err != nil {
		t.Errorf("topology apply's config does not load with its environment: %v", err)
	}

	// Monitoring: every pod's admin port, and the alerts Prometheus
	// loads from deploy/prometheus/alerts.yml.
	pm := r.get(t, "PodMonitor", "fh-firehose").(*monitoringv1.PodMonitor)
	if pm.Spec.PodMetricsEndpoints[0].Port == nil || *pm.Spec.PodMetricsEndpoints[0].Port != "admin" || pm.Spec.PodMetricsEndpoints[0].Path != "/metrics" || pm.Labels["release"] != "prometheus" {
		t.Errorf("pod monitor %+v", pm.Spec)
	}
	for _, w := range []map[string]string{sts.Spec.Template.Labels, api.Spec.Template.Labels, archive.Spec.Template.Labels} {
		for k, v := range pm.Spec.Selector.MatchLabels {
			if w[k] != v {
				t.Errorf("the pod monitor does not select pods labelled %v", w)
			}
		}
	}
	rule := r.get(t, "PrometheusRule", "fh-firehose").(*monitoringv1.PrometheusRule)
	var want monitoringv1.PrometheusRuleSpec
	alerts, err := os.ReadFile("../prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := sigsyaml.UnmarshalStrict(alerts, &want); err != nil {
		t.Fatal(err)
	}
	if len(want.Groups) == 0 || !reflect.DeepEqual(rule.Spec, want) {
		t.Errorf("the PrometheusRule differs from deploy/prometheus/alerts.yml")
	}
}

// The chart's copy of the alerts is deploy/prometheus/alerts.yml, byte for
// byte (Helm reads only files inside the chart).
func TestAlertsCopyIsCurrent(t *testing.T) {
	a, err := os.ReadFile("../prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(chartDir + "/files/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("deploy/helm/firehose/files/alerts.yml differs from deploy/prometheus/alerts.yml: cp deploy/prometheus/alerts.yml deploy/helm/firehose/files/alerts.yml")
	}
}

// The chart's batch.max_events defaults by type (for lag thresholds) are
// the destinations' own, and its default partition count config's.
func TestChartDefaultsMatchFirehose(t *testing.T) {
	helpers, err := os.ReadFile(chartDir + "/templates/_helpers.tpl")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)define "firehose.maxEventsDefaults" -}}\n(.*?)\n\{\{- end`).FindSubmatch(helpers)
	if m == nil {
		t.Fatal("no firehose.maxEventsDefaults in _helpers.tpl")
	}
	var got map[string]int
	if err := yaml.Unmarshal(m[1], &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for typ, d := range destinations.All {
		want[typ] = d.Batch.MaxEvents
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("chart max_events defaults %v, destinations' %v", got, want)
	}
	tpl, err := os.ReadFile(chartDir + "/templates/connectors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(tpl), fmt.Sprintf(`"partitions" %d $.Values.config`, topology.DefaultPartitions)) {
		t.Errorf("connectors.yaml does not default the partitions to config's %d", topology.DefaultPartitions)
	}
}
