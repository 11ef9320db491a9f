package integration

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/firehose/firehose/app"
	"github.com/firehose/firehose/internal/dlq"
	"github.com/firehose/firehose/testsupport/duckdb"
	"github.com/firehose/firehose/testsupport/wait"
)

// The Parquet a file connector writes, read by DuckDB (an independent
// reader): every event once, typed columns (a UTC timestamp, INT64
// sequence, JSON objects), masked values masked, and each resource's
// events in order inside each object.
func TestParquetReadByDuckDB(t *testing.T) {
	b := startBroker(t)
	out := t.TempDir()
	cfg := loadConfig(t, `
kafka: {brokers: ["${BROKER}"]}
processor: {transactional_id: parquet-test}
connectors:
  - name: lake
    type: file
    encoding: parquet
    compression: zstd
    batch: {max_events: 900, max_age: 300ms}
    columns:
      - {name: price, path: metadata.price, type: double}
      - {name: attempt, path: metadata.attempt, type: long}
      - {name: consent, path: lead_data.consent, type: boolean}
      - {name: source, path: metadata.source, type: string}
      - {name: outcome_copy, path: outcome, type: string}
    file:
      dir: ${OUT}
      path: "events/account={{account_id}}/day={{day}}/"
api: {listen: "off"}
`, map[string]string{"BROKER": b.Addr, "OUT": out})
	applyTopology(t, cfg)
	lines, events := makeInput(5000, 7)
	// A price that is not a number goes to the DLQ, naming the column.
	bad := regexp.MustCompile(`"price":[0-9.]+`).ReplaceAllString(string(lines[0][len("lead_000000|"):]), `"price":"cheap"`)
	bad = strings.Replace(bad, `"resource_id":"`, `"resource_id":"cheap_`, 1)
	key := regexp.MustCompile(`"resource_id":"([^"]+)"`).FindStringSubmatch(bad)[1]
	lines = append(lines, []byte(key+"|"+bad))
	kcatProduce(t, b.Addr, cfg.Topology.Raw.Name, lines)
	runApp(t, cfg, app.Options{})

	glob := filepath.Join(out, "events", "**", "*.parquet")
	from := fmt.Sprintf("read_parquet('%s', filename = true, hive_partitioning = false)", glob)
	count := func() int {
		rows := duckdb.Query(t, "select count(*)::INTEGER as n from "+from)
		return int(rows[0]["n"].(float64))
	}
	wait.Eventually(t, 60*time.Second, fmt.Sprintf("%d events in Parquet files", len(events)), func() bool {
		matches, _ := filepath.Glob(filepath.Join(out, "events", "*", "*", "*.parquet"))
		return len(matches) > 0 && count() >= len(events)
	})

	one := func(sql string) map[string]any {
		t.Helper()
		rows := duckdb.Query(t, sql)
		if len(rows) != 1 {
			t.Fatalf("%s: %d rows", sql, len(rows))
		}
		return rows[0]
	}
	r := one(`select count(*)::INTEGER as n, count(distinct event_id)::INTEGER as ids,
		any_value(typeof("timestamp")) as ts, any_value(typeof(sequence)) as seq, any_value(typeof(lead_data)) as ld,
		any_value(typeof(firehose_metadata)) as meta, count(distinct filename)::INTEGER as files from ` + from)
	if int(r["n"].(float64)) != len(events) || int(r["ids"].(float64)) != len(events) {
		t.Fatalf("DuckDB read %v rows, %v distinct events; %d were sent", r["n"], r["ids"], len(events))
	}
	if r["ts"] != "TIMESTAMP WITH TIME ZONE" || r["seq"] != "BIGINT" || r["ld"] != "JSON" || !strings.HasPrefix(r["meta"].(string), `STRUCT(batch_id VARCHAR, "sequence" BIGINT, delivered_at TIMESTAMP WITH TIME ZONE, replay VARCHAR)`) {
		t.Fatalf("column types: %v", r)
	}
	t.Logf("%v events in %v objects", r["n"], r["files"])

	// Timestamps are the events' own, to the millisecond.
	want := map[string]string{}
	for _, e := range events {
		want[e.EventID] = e.Timestamp.UTC().Format("2006-01-02 15:04:05.000")
	}
	rows := duckdb.Query(t, `select event_id, strftime("timestamp" at time zone 'UTC', '%Y-%m-%d %H:%M:%S.%g') as ts from `+from+` using sample 50 rows`)
	for _, row := range rows {
		if id := row["event_id"].(string); row["ts"] != want[id] {
			t.Errorf("event %s: timestamp %v, sent %s", id, row["ts"], want[id])
		}
	}

	// Masked before it left the processor: the generator's SSNs and
	// e-mail addresses arrive as ***-**-NNNN and j***@domain.
	r = one(`select count(*) filter (where lead_data->>'ssn' is not null)::INTEGER as ssns,
		count(*) filter (where lead_data->>'ssn' is not null and not regexp_full_match(lead_data->>'ssn', '\*\*\*-\*\*-[0-9]{4}'))::INTEGER as clear_ssns,
		count(*) filter (where lead_data->>'email' is not null and not contains(lead_data->>'email', '***@'))::INTEGER as clear_emails from ` + from)
	if r["ssns"].(float64) == 0 || r["clear_ssns"].(float64) != 0 || r["clear_emails"].(float64) != 0 {
		t.Fatalf("masking in Parquet: %v", r)
	}

	// The path's Hive-style partitions are columns to a reader.
	r = one(fmt.Sprintf(`select count(*) filter (where account is distinct from account_id)::INTEGER as wrong, count(distinct account)::INTEGER as accounts
		from read_parquet('%s', hive_partitioning = true)`, glob))
	if r["wrong"].(float64) != 0 || r["accounts"].(float64) < 2 {
		t.Fatalf("hive partitions: %v", r)
	}

	// Promoted columns, typed, with the events' values.
	var price float64
	for _, e := range events {
		var m struct{ Price float64 }
		_ = json.Unmarshal(e.Metadata, &m)
		price += m.Price
	}
	r = one(`select any_value(typeof(price)) as tp, any_value(typeof(attempt)) as ta, any_value(typeof(consent)) as tc,
		any_value(typeof(source)) as ts, sum(price) as price, count(*) filter (where consent is null or attempt is null or source is null
		or outcome_copy is distinct from outcome)::INTEGER as nulls from ` + from)
	if r["tp"] != "DOUBLE" || r["ta"] != "BIGINT" || r["tc"] != "BOOLEAN" || r["ts"] != "VARCHAR" || r["nulls"].(float64) != 0 || math.Abs(r["price"].(float64)-price) > 0.01 {
		t.Fatalf("promoted columns: %v (the events' prices add up to %.2f)", r, price)
	}
	dead := consumeAll(t, cfg, cfg.Topology.DLQ.Name, 1, 20*time.Second)
	if msg := dlq.Header(dead[0], dlq.HeaderMessage); !strings.Contains(msg, "column price: the value at metadata.price is \"cheap\", not a double") {
		t.Fatalf("dead letter %q", msg)
	}

	// Inside each object, each resource's events in sequence order, and
	// the object's rows in firehose_metadata.sequence order.
	r = one(`select count(*)::INTEGER as out_of_order from (
		select sequence, lag(sequence) over (partition by filename, account_id, resource_id order by firehose_metadata.sequence) as prev
		from ` + from + `) where prev >= sequence`)
	if r["out_of_order"].(float64) != 0 {
		t.Fatalf("%v events out of order within their object", r["out_of_order"])
	}
}

// A Parquet connector with a transform writes the transform's shape: its
// columns are the fields the steps make, typed where the steps tell the
// type (a set with float(...) is a DOUBLE), and nothing the steps left
// out; DuckDB reads every event with its values, masking intact.
func TestParquetColumnsFollowTheTransform(t *testing.T) {
	b := startBroker(t)
	out := t.TempDir()
	cfg := loadConfig(t, `
kafka: {brokers: ["${BROKER}"]}
processor: {transactional_id: parquet-shape-test}
connectors:
  - name: lake
    type: file
    encoding: parquet
    batch: {max_events: 700, max_age: 300ms}
    transform:
      - select: [event_id, event_type, account_id, resource_id, sequence, timestamp, metadata.price, lead_data.email]
      - rename: {event_type: type}
      - set: {price_cents: "float(metadata.price) * 100"}
      - drop: [metadata]
    file: {dir: "${OUT}", path: "shaped/"}
api: {listen: "off"}
`, map[string]string{"BROKER": b.Addr, "OUT": out})
	applyTopology(t, cfg)
	lines, events := makeInput(3000, 5)
	kcatProduce(t, b.Addr, cfg.Topology.Raw.Name, lines)
	runApp(t, cfg, app.Options{})

	from := fmt.Sprintf("read_parquet('%s')", filepath.Join(out, "shaped", "*.parquet"))
	wait.Eventually(t, 60*time.Second, fmt.Sprintf("%d events in Parquet files", len(events)), func() bool {
		matches, _ := filepath.Glob(filepath.Join(out, "shaped", "*.parquet"))
		return len(matches) > 0 && int(duckdb.Query(t, "select count(*)::INTEGER as n from "+from)[0]["n"].(float64)) >= len(events)
	})
	var cols []string
	for _, r := range duckdb.Query(t, "select column_name || ' ' || column_type as c from (describe select * from "+from+")") {
		cols = append(cols, r["c"].(string))
	}
	want := []string{"event_id VARCHAR", "account_id VARCHAR", "resource_id VARCHAR", "sequence BIGINT",
		"timestamp TIMESTAMP WITH TIME ZONE", "lead_data JSON", "type VARCHAR", "price_cents DOUBLE"}
	if got := strings.Join(cols[:len(cols)-1], ", "); got != strings.Join(want, ", ") || !strings.HasPrefix(cols[len(cols)-1], "firehose_metadata STRUCT") {
		t.Fatalf("columns:\n got %s\nwant %s, firehose_metadata STRUCT(...)", strings.Join(cols, ", "), strings.Join(want, ", "))
	}

	byID := map[string]int{}
	var price float64
	for i, e := range events {
		byID[e.EventID] = i
		var m struct{ Price float64 }
		_ = json.Unmarshal(e.Metadata, &m)
		price += m.Price
	}
	rows := duckdb.Query(t, `select event_id, type, sequence, strftime("timestamp" at time zone 'UTC', '%Y-%m-%d %H:%M:%S.%g') as ts,
		lead_data->>'email' as email, price_cents from `+from)
	if len(rows) != len(events) {
		t.Fatalf("%d rows for %d events", len(rows), len(events))
	}
	var cents float64
	for _, r := range rows {
		i, ok := byID[r["event_id"].(string)]
		if !ok {
			t.Fatalf("row for an unknown event: %v", r)
		}
		e := events[i]
		byID[e.EventID] = -1
		if r["type"] != e.EventType || fmt.Sprint(r["sequence"]) != fmt.Sprint(e.Sequence) || r["ts"] != e.Timestamp.UTC().Format("2006-01-02 15:04:05.000") {
			t.Fatalf("event %s read as %v", e.EventID, r)
		}
		if email, _ := r["email"].(string); email != "" && !strings.Contains(email, "***@") {
			t.Fatalf("event %s: e-mail %q is not masked", e.EventID, email)
		}
		cents += r["price_cents"].(float64)
	}
	if math.Abs(cents-100*price) > 1 {
		t.Fatalf("price_cents add up to %.2f, the prices to %.2f", cents, price)
	}
}
