// Package metrics is a Firehose process's Prometheus registry: the
// processor's and connectors' counters, delivery histograms, consumer lag
// read from Kafka at scrape time, and franz-go's client metrics (kprom).
package metrics

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/firehose/firehose/connectors"
	"github.com/firehose/firehose/connectors/iceberg"
	"github.com/firehose/firehose/internal/buildinfo"
	"github.com/firehose/firehose/processor"
	"github.com/firehose/firehose/pullapi"
)

// Set is one process's metrics.
type Set struct {
	reg *prometheus.Registry
	// kafka holds franz-go's client metrics, served through gaugeNames.
	kafka *prometheus.Registry

	batchEvents *prometheus.HistogramVec
	batchBytes  *prometheus.HistogramVec
	latency     *prometheus.HistogramVec
	attempts    *prometheus.CounterVec
	dropped     *prometheus.CounterVec

	pullRequests *prometheus.CounterVec
	pullDuration *prometheus.HistogramVec
}

// DeliveryLatencyBuckets span a second to an hour: event age at
// acknowledgement, which batching by time puts in minutes.
var DeliveryLatencyBuckets = []float64{0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// New returns a registry with the Go runtime and process collectors.
func New() *Set {
	s := &Set{reg: prometheus.NewRegistry(), kafka: prometheus.NewRegistry()}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo())
	s.batchEvents = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "firehose_connector_batch_events", Help: "Events per delivered batch.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 10),
	}, []string{"connector"})
	s.batchBytes = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "firehose_connector_batch_bytes", Help: "Encoded, compressed bytes per delivered batch.",
		Buckets: prometheus.ExponentialBuckets(1024, 4, 10),
	}, []string{"connector"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "firehose_connector_delivery_latency_seconds", Help: "Age of each delivered event at acknowledgement: from its timestamp to the destination's ack.",
		Buckets: DeliveryLatencyBuckets,
	}, []string{"connector"})
	s.attempts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "firehose_connector_delivery_attempts_total", Help: "Batch delivery attempts by outcome: success, retryable_error, permanent_error.",
	}, []string{"connector", "outcome"})
	s.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "firehose_connector_dropped_events_total", Help: "Events an on_error rule dropped: neither delivered nor dead-lettered, by connector and rule.",
	}, []string{"connector", "rule"})
	s.pullRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "firehose_pull_requests_total", Help: "Pull API requests answered, by HTTP status code.",
	}, []string{"code"})
	s.pullDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "firehose_pull_request_duration_seconds", Help: "Time to answer a pull API request, by HTTP status code (long polls wait up to the budget).",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5},
	}, []string{"code"})
	s.reg.MustRegister(s.batchEvents, s.batchBytes, s.latency, s.attempts, s.dropped, s.pullRequests, s.pullDuration)
	return s
}

// PullRequest counts one answered pull API request.
func (s *Set) PullRequest(status int, took time.Duration) {
	code := strconv.Itoa(status)
	s.pullRequests.WithLabelValues(code).Inc()
	s.pullDuration.WithLabelValues(code).Observe(took.Seconds())
}

// PullWindow exports the pull API window's figures.
func (s *Set) PullWindow(stats func() pullapi.Stats) {
	s.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "firehose_pull_window_reads_total", Help: "Partitions pull API requests read from the in-memory window of recent events.",
		}, func() float64 { return float64(stats().WindowReads) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "firehose_pull_kafka_reads_total", Help: "Partitions pull API requests read from Kafka: positions before the window, or while it starts.",
		}, func() float64 { return float64(stats().KafkaReads) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "firehose_pull_window_bytes", Help: "Bytes of events the pull API window holds (bounded by api.window_bytes).",
		}, func() float64 { return float64(stats().WindowBytes) }),
	)
}

// buildInfo is firehose_build_info{version,revision,go_version} 1.
func buildInfo() prometheus.Collector {
	bi := buildinfo.Read()
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "firehose_build_info", Help: "The running binary's version, VCS revision and Go version; always 1.",
		ConstLabels: prometheus.Labels{"version": bi.Version, "revision": bi.Revision, "go_version": bi.GoVersion},
	}, func() float64 { return 1 })
}

// Registry is where more collectors go.
func (s *Set) Registry() *prometheus.Registry { return s.reg }

// Gatherer is everything /metrics serves: the registry and franz-go's
// client metrics.
func (s *Set) Gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{s.reg, gaugeNames{s.kafka}}
}

// Handler serves /metrics.
func (s *Set) Handler() http.Handler {
	return promhttp.HandlerFor(s.Gatherer(), promhttp.HandlerOpts{Registry: s.reg})
}

// KafkaHooks returns franz-go client metrics for one client, labelled with
// the component that owns it.
func (s *Set) KafkaHooks(component string) kgo.Opt {
	m := kprom.NewMetrics("firehose_kafka", kprom.Registerer(s.kafka), kprom.WithStaticLabel(prometheus.Labels{"component": component}))
	return kgo.WithHooks(m)
}

// gaugeNames serves a registry with its gauges named as Prometheus expects:
// kprom names two gauges (buffered produce and fetch records) "_total",
// the suffix of counters, which promtool check metrics rejects and which
// rate() would be wrong on. They are served without it.
type gaugeNames struct{ g prometheus.Gatherer }

func (g gaugeNames) Gather() ([]*dto.MetricFamily, error) {
	mfs, err := g.g.Gather()
	for _, mf := range mfs {
		if mf.GetType() == dto.MetricType_GAUGE {
			if name, ok := strings.CutSuffix(mf.GetName(), "_total"); ok {
				mf.Name = &name
			}
		}
	}
	return mfs, err
}

func counter(name, help string, labels prometheus.Labels, f func() int64) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 { return float64(f()) })
}

// Processor exports the processor's running totals.
func (s *Set) Processor(st *processor.Stats) {
	const name, help = "firehose_processor_events_total", "Events through the processor by result: in, out, filtered, deduplicated, dlq, coalesced (profile changes taken into profiles). Counted when their transaction commits."
	for result, v := range map[string]func() int64{
		"in": st.In.Load, "out": st.Emitted.Load, "filtered": st.Filtered.Load,
		"deduplicated": st.Deduplicated.Load, "dlq": st.DeadLettered.Load, "coalesced": st.Coalesced.Load,
	} {
		s.reg.MustRegister(counter(name, help, prometheus.Labels{"result": result}, v))
	}
	s.reg.MustRegister(
		counter("firehose_processor_masked_total", "Values masked, dropped or hashed by mask rules.", nil, st.Masked.Load),
		counter("firehose_processor_headers_dropped_total", "Producers' record headers not carried to their events: past 32 headers or 8 KiB, or trace context that is not W3C's.", nil, st.HeadersDropped.Load),
		counter("firehose_processor_transactions_total", "Transactions by outcome.", prometheus.Labels{"outcome": "commit"}, st.Transactions.Load),
		counter("firehose_processor_transactions_total", "Transactions by outcome.", prometheus.Labels{"outcome": "abort"}, st.Aborts.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "firehose_processor_profiles", Help: "Profiles this process holds (processor.profiles), after its last commit."},
			func() float64 { return float64(st.Profiles.Load()) }),
	)
}

// Connector exports one connector's running totals.
func (s *Set) Connector(name string, st *connectors.Stats) {
	const evName, evHelp = "firehose_connector_events_total", "Events through a connector by result: consumed, filtered, delivered, dlq."
	for result, v := range map[string]func() int64{
		"consumed": st.Consumed.Load, "filtered": st.Filtered.Load,
		"delivered": st.Delivered.Load, "dlq": st.DeadLettered.Load, "dropped": st.Dropped.Load,
	} {
		s.reg.MustRegister(counter(evName, evHelp, prometheus.Labels{"connector": name, "result": result}, v))
	}
	s.reg.MustRegister(
		counter("firehose_connector_batches_total", "Batches delivered.", prometheus.Labels{"connector": name}, st.Batches.Load),
		counter("firehose_connector_retries_total", "Delivery retries.", prometheus.Labels{"connector": name}, st.Retries.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "firehose_connector_in_flight_limit", Help: "The bound on the connector's deliveries in flight: max_in_flight, or with auto the adaptive window's limit now.",
			ConstLabels: prometheus.Labels{"connector": name},
		}, func() float64 { return float64(st.InFlightLimit.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "firehose_connector_last_delivery_timestamp_seconds", Help: "When the connector last had a batch acknowledged (0: not yet).",
			ConstLabels: prometheus.Labels{"connector": name},
		}, func() float64 { return float64(st.LastDelivery.Load()) / 1e9 }),
	)
}

// Iceberg exports an Iceberg connector's commits.
func (s *Set) Iceberg(name string, st *iceberg.Stats) {
	l := prometheus.Labels{"connector": name}
	const commits, help = "firehose_iceberg_commits_total", "Iceberg commit attempts by result: committed, conflict (another writer committed first; tried again), failed (the catalog unreachable or refusing; the batches are held and it is tried again)."
	for result, v := range map[string]func() int64{"committed": st.Commits.Load, "conflict": st.Conflicts.Load, "failed": st.Failures.Load} {
		s.reg.MustRegister(counter(commits, help, prometheus.Labels{"connector": name, "result": result}, v))
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: l}, f)
	}
	s.reg.MustRegister(
		counter("firehose_iceberg_files_total", "Data files the connector's commits added to its table.", l, st.Files.Load),
		counter("firehose_iceberg_skipped_batches_total", "Batches delivered again that the table held already (after a crash or a revoke), acknowledged without adding them.", l, st.Skipped.Load),
		gauge("firehose_iceberg_pending_files", "Data files written and waiting for a commit.", func() float64 { return float64(st.Pending.Load()) }),
		gauge("firehose_iceberg_last_commit_timestamp_seconds", "When the last commit succeeded (0: none yet).", func() float64 { return float64(st.LastCommit.Load()) / 1e9 }),
		gauge("firehose_iceberg_last_commit_seconds", "How long the last commit's catalog round trip took.", func() float64 { return time.Duration(st.LastCommitTook.Load()).Seconds() }),
		gauge("firehose_iceberg_last_commit_wait_seconds", "How long the oldest data file of the last commit waited for it: up to commit_interval, more while the catalog holds.", func() float64 { return time.Duration(st.LastWait.Load()).Seconds() }),
	)
}

// Observer returns what one connector's worker reports deliveries to. Its
// series exist from here on at zero, so ratios are defined from the start.
func (s *Set) Observer(name string) connectors.Observer {
	return &observer{
		events:   s.batchEvents.WithLabelValues(name),
		bytes:    s.batchBytes.WithLabelValues(name),
		latency:  s.latency.WithLabelValues(name),
		ok:       s.attempts.WithLabelValues(name, "success"),
		retry:    s.attempts.WithLabelValues(name, "retryable_error"),
		rejected: s.attempts.WithLabelValues(name, "permanent_error"),
		dropped:  s.dropped.MustCurryWith(prometheus.Labels{"connector": name}),
	}
}

type observer struct {
	events, bytes, latency prometheus.Observer
	ok, retry, rejected    prometheus.Counter
	dropped                *prometheus.CounterVec
}

func (o *observer) Dropped(rule string, n int) { o.dropped.WithLabelValues(rule).Add(float64(n)) }

func (o *observer) Delivered(b *connectors.Batch, skip func(i int) bool, at time.Time) {
	o.ok.Inc()
	o.events.Observe(float64(b.Len()))
	o.bytes.Observe(float64(b.Bytes()))
	for i, ts := range b.Times {
		if ts.IsZero() || (skip != nil && skip(i)) {
			continue
		}
		o.latency.Observe(max(0, at.Sub(ts).Seconds()))
	}
}

func (o *observer) Failed(final bool) {
	if final {
		o.rejected.Inc()
	} else {
		o.retry.Inc()
	}
}

// Lag exports consumer lag per group and partition, read from Kafka at
// scrape time (bounded to 3 s).
func (s *Set) Lag(cl *kgo.Client, groups []string, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	s.reg.MustRegister(&lagCollector{adm: kadm.NewClient(cl), groups: groups, log: log,
		desc: prometheus.NewDesc("firehose_consumer_lag", "Records not yet committed by a consumer group, per partition.", []string{"group", "topic", "partition"}, nil)})
}

type lagCollector struct {
	adm    *kadm.Client
	groups []string
	log    *slog.Logger
	desc   *prometheus.Desc
	mu     sync.Mutex
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	lags, err := c.adm.Lag(ctx, c.groups...)
	if err != nil {
		c.log.Warn("consumer lag unavailable for /metrics", "err", err)
		return
	}
	for g, l := range lags {
		if l.Error() != nil {
			continue
		}
		for t, ps := range l.Lag {
			for p, m := range ps {
				if m.Err != nil || m.Lag < 0 {
					continue
				}
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(m.Lag), g, t, strconv.Itoa(int(p)))
			}
		}
	}
}
