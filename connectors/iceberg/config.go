package iceberg

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/firehose/firehose/internal/yamlconf"
	"github.com/firehose/firehose/schemas"
	"github.com/firehose/firehose/transform"
)

// Config is the iceberg section of a connector.
type Config struct {
	Catalog Catalog `yaml:"catalog"`
	// Warehouse is where a table the connector creates keeps its data
	// and metadata: s3://bucket/prefix, or for local use file:///dir or
	// a directory (relative to the working directory).
	// With a SQL or Glue catalog it is required; a REST catalog may
	// choose the location itself when it is empty.
	Warehouse string `yaml:"warehouse"`
	// Namespace and Table name the table; default firehose and events.
	Namespace string `yaml:"namespace"`
	Table     string `yaml:"table"`
	// PartitionBy is the table's partition spec, in Iceberg's
	// transforms over the table's columns: identity(col) (or just col),
	// year(timestamp), month(timestamp), day(timestamp), hour(timestamp).
	// Default ["day(timestamp)"]. Each batch, and so each data file,
	// holds one partition.
	PartitionBy []string `yaml:"partition_by"`
	// CommitInterval is how often the connector commits the data files
	// it wrote to the table: one snapshot per worker per interval.
	// Default 1m; a batch is acknowledged (and its offsets committed to
	// Kafka) once the commit that holds it succeeded.
	CommitInterval time.Duration `yaml:"commit_interval"`
	// S3 is how data and metadata files in an s3:// warehouse are
	// written; without keys the AWS default chain is used.
	S3 S3 `yaml:"s3"`
	// Properties are passed to the catalog and the file IO as they are
	// (iceberg-go's property names), for what the fields above do not
	// name.
	Properties map[string]string `yaml:"properties"`
}

// Catalog is where the table is registered.
type Catalog struct {
	// Type is sql (a SQLite file, iceberg-go's SQL catalog), rest (the
	// Iceberg REST catalog API: Polaris, Nessie, Gravitino, Lakekeeper,
	// Glue's and S3 Tables' REST endpoints, Snowflake Open Catalog) or
	// glue (AWS Glue through its own API and the AWS chain).
	Type string `yaml:"type"`
	// URI: for sql, sqlite:///path/to/catalog.db; for rest, the
	// catalog's base URL.
	URI string `yaml:"uri"`
	// Warehouse is the REST catalog's warehouse name (its "warehouse"
	// property), e.g. analytics.
	Warehouse string `yaml:"warehouse"`
	// Credential is the REST catalog's OAuth2 client credential,
	// client_id:client_secret; Token a bearer token instead. Put both in
	// the environment: ${ICEBERG_CREDENTIAL}.
	Credential string `yaml:"credential"`
	Token      string `yaml:"token"`
	// Name is the catalog's name in its rows (sql); default firehose.
	Name string `yaml:"name"`
}

// S3 are the settings of an s3:// warehouse, as the s3 destination's.
type S3 struct {
	Region          string `yaml:"region"`
	Endpoint        string `yaml:"endpoint"`
	PathStyle       bool   `yaml:"path_style"`
	AccessKeyID     string `yaml:"access_key_id"`
	SecretAccessKey string `yaml:"secret_access_key"`
}

// Defaults fills empty fields.
func (c *Config) Defaults() {
	if c.Namespace == "" {
		c.Namespace = "firehose"
	}
	if c.Table == "" {
		c.Table = "events"
	}
	if c.PartitionBy == nil {
		c.PartitionBy = []string{"day(timestamp)"}
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = time.Minute
	}
	if c.Catalog.Name == "" {
		c.Catalog.Name = "firehose"
	}
}

var nameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Validate reports every problem with paths relative to the section.
func (c *Config) Validate() error {
	var errs []error
	switch c.Catalog.Type {
	case "sql":
		if _, err := sqlitePath(c.Catalog.URI); err != nil {
			errs = append(errs, yamlconf.Errorf("catalog.uri", "%v", err))
		}
		if c.Warehouse == "" {
			errs = append(errs, yamlconf.Errorf("warehouse", "required with a sql catalog: where tables keep their files (s3://bucket/prefix or file:///dir)"))
		}
	case "rest":
		if !strings.HasPrefix(c.Catalog.URI, "http://") && !strings.HasPrefix(c.Catalog.URI, "https://") {
			errs = append(errs, yamlconf.Errorf("catalog.uri", "a rest catalog needs the http(s) URL of its API, got %q", c.Catalog.URI))
		}
		if c.Catalog.Credential != "" && c.Catalog.Token != "" {
			errs = append(errs, yamlconf.Errorf("catalog.token", "credential and token exclude each other"))
		}
	case "glue":
		if c.Warehouse == "" {
			errs = append(errs, yamlconf.Errorf("warehouse", "required with a glue catalog: where tables keep their files (s3://bucket/prefix)"))
		}
	case "":
		errs = append(errs, yamlconf.Errorf("catalog.type", "required: sql, rest or glue"))
	default:
		errs = append(errs, yamlconf.Errorf("catalog.type", "must be sql, rest or glue, got %q", c.Catalog.Type))
	}
	if strings.Contains(c.Warehouse, "://") && !strings.HasPrefix(c.Warehouse, "s3://") && !strings.HasPrefix(c.Warehouse, "s3a://") && !strings.HasPrefix(c.Warehouse, "file://") {
		errs = append(errs, yamlconf.Errorf("warehouse", "must be an s3:// or file:// URL or a local directory, got %q", c.Warehouse))
	}
	if !nameRE.MatchString(c.Namespace) {
		errs = append(errs, yamlconf.Errorf("namespace", "must be letters, digits and _, got %q", c.Namespace))
	}
	if !nameRE.MatchString(c.Table) {
		errs = append(errs, yamlconf.Errorf("table", "must be letters, digits and _, got %q", c.Table))
	}
	if _, err := ParsePartitions(c.PartitionBy); err != nil {
		errs = append(errs, yamlconf.Errorf("partition_by", "%v", err))
	}
	if c.CommitInterval < time.Second {
		errs = append(errs, yamlconf.Errorf("commit_interval", "must be at least 1s, got %s", c.CommitInterval))
	}
	if (c.S3.AccessKeyID == "") != (c.S3.SecretAccessKey == "") {
		errs = append(errs, yamlconf.Errorf("s3.access_key_id", "access_key_id and secret_access_key go together"))
	}
	return errors.Join(errs...)
}

// sqlitePath returns the file of a sqlite:///path URI.
func sqlitePath(uri string) (string, error) {
	p, ok := strings.CutPrefix(uri, "sqlite://")
	if !ok || p == "" {
		return "", fmt.Errorf("a sql catalog is a SQLite file: sqlite:///path/to/catalog.db, got %q", uri)
	}
	return p, nil
}

// CheckTransform reports a partition that a connector's transform t
// breaks: batches are cut by the event's own values, so the table must
// get the partition's column as the event has it, with its type.
func (c *Config) CheckTransform(t *transform.Transform) error {
	parts, err := ParsePartitions(c.PartitionBy)
	if err != nil || t == nil {
		return nil // Validate reports it
	}
	cols, _ := t.Shape()
	for _, p := range parts {
		spec := p.Transform + "(" + p.Column + ")"
		i := slices.IndexFunc(cols, func(col transform.Column) bool { return col.Name == p.Column })
		want := transform.String
		if p.Transform != "identity" {
			want = transform.Timestamp
		}
		switch {
		case i < 0:
			return fmt.Errorf("%s: the transform leaves %s out of the table; select it too", spec, p.Column)
		case cols[i].Type != want || t.Rewrites(p.Column):
			return fmt.Errorf("%s: the transform changes %s, but batches are partitioned by the event's own value; set another field", spec, p.Column)
		}
	}
	return nil
}

// Partition is one field of the partition spec.
type Partition struct {
	Transform string // identity, year, month, day or hour
	Column    string
}

// Name is the partition field's name, as Spark names it: the column
// for identity, else column_transform.
func (p Partition) Name() string {
	if p.Transform == "identity" {
		return p.Column
	}
	return p.Column + "_" + p.Transform
}

var partRE = regexp.MustCompile(`^\s*(?:([a-z]+)\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)|([A-Za-z_][A-Za-z0-9_]*))\s*$`)

// timeParts is what each time transform adds to a batch's path, so that
// one batch holds one partition.
var timeParts = map[string]string{
	"year":  "{{year}}",
	"month": "{{year}}-{{month}}",
	"day":   "{{year}}-{{month}}-{{day}}",
	"hour":  "{{year}}-{{month}}-{{day}}-{{hour}}",
}

// ParsePartitions parses partition_by. Time transforms apply to
// timestamp, identity to any top-level string field of the event.
func ParsePartitions(specs []string) ([]Partition, error) {
	var out []Partition
	seen := map[string]bool{}
	probe := &schemas.Event{}
	for _, s := range specs {
		m := partRE.FindStringSubmatch(s)
		if m == nil {
			return nil, fmt.Errorf("%q: want transform(column) or column, e.g. day(timestamp) or event_type", s)
		}
		p := Partition{Transform: m[1], Column: m[2]}
		if m[3] != "" {
			p = Partition{Transform: "identity", Column: m[3]}
		}
		switch p.Transform {
		case "year", "month", "day", "hour":
			if p.Column != "timestamp" {
				return nil, fmt.Errorf("%q: %s() applies to timestamp", s, p.Transform)
			}
		case "identity":
			if _, ok := probe.StringField(p.Column); !ok || p.Column == "timestamp" || p.Column == "sequence" {
				return nil, fmt.Errorf("%q: identity partitions take a string field of the event (event_type, account_id, flow_id, …)", s)
			}
		case "bucket", "truncate":
			return nil, fmt.Errorf("%q: %s partitions are not supported yet (identity, year, month, day and hour are)", s, p.Transform)
		default:
			return nil, fmt.Errorf("%q: unknown transform %s (identity, year, month, day, hour)", s, p.Transform)
		}
		if p.Transform != "identity" {
			if seen["time"] {
				return nil, fmt.Errorf("%q: timestamp takes one time transform (year, month, day or hour)", s)
			}
			seen["time"] = true
		}
		if seen[p.Name()] {
			return nil, fmt.Errorf("%q: partitioned twice", s)
		}
		seen[p.Name()] = true
		out = append(out, p)
	}
	return out, nil
}

// pathTemplate is the path that keeps a batch in one partition.
func pathTemplate(parts []Partition) string {
	var b strings.Builder
	for _, p := range parts {
		if p.Transform == "identity" {
			b.WriteString(p.Column + "={{" + p.Column + "}}/")
		} else {
			b.WriteString(p.Name() + "=" + timeParts[p.Transform] + "/")
		}
	}
	return b.String()
}

// resolved is c with a local warehouse as an absolute file:// URL.
func (c Config) resolved() (Config, error) {
	if c.Warehouse != "" && !strings.Contains(c.Warehouse, "://") {
		abs, err := filepath.Abs(c.Warehouse)
		if err != nil {
			return c, err
		}
		c.Warehouse = "file://" + abs
	}
	return c, nil
}
