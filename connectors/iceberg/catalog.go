package iceberg

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"

	ice "github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/catalog/glue"
	"github.com/apache/iceberg-go/catalog/rest"
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	iceio "github.com/apache/iceberg-go/io"
	_ "github.com/apache/iceberg-go/io/gocloud/s3" // s3:// warehouses
	_ "modernc.org/sqlite"                         // the SQL catalog's SQLite, in pure Go

	"github.com/firehose/firehose/internal/awsconf"
)

// properties are what the catalog and the file IO are given: the
// warehouse, the S3 settings, then Properties as they are.
func properties(cfg Config) ice.Properties {
	p := ice.Properties{}
	if cfg.Warehouse != "" {
		p["warehouse"] = cfg.Warehouse
	}
	if cfg.S3.Region != "" {
		p[iceio.S3Region] = cfg.S3.Region
	}
	if cfg.S3.Endpoint != "" {
		p[iceio.S3EndpointURL] = cfg.S3.Endpoint
	}
	if cfg.S3.AccessKeyID != "" {
		p[iceio.S3AccessKeyID] = cfg.S3.AccessKeyID
		p[iceio.S3SecretAccessKey] = cfg.S3.SecretAccessKey
	}
	p[iceio.S3ForceVirtualAddressing] = strconv.FormatBool(!cfg.S3.PathStyle)
	for k, v := range cfg.Properties {
		p[k] = v
	}
	return p
}

// openCatalog opens the configured catalog.
func openCatalog(ctx context.Context, cfg Config) (catalog.Catalog, error) {
	cfg, err := cfg.resolved()
	if err != nil {
		return nil, err
	}
	props := properties(cfg)
	switch cfg.Catalog.Type {
	case "sql":
		path, err := sqlitePath(cfg.Catalog.URI)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		// Several workers share the file: wait for its lock rather than
		// fail a commit on SQLITE_BUSY.
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)")
		if err != nil {
			return nil, err
		}
		cat, err := sqlcat.NewCatalog(cfg.Catalog.Name, db, sqlcat.SQLite, props)
		if err != nil {
			_ = db.Close()
			return nil, err
		}
		if err := cat.CreateSQLTables(ctx); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("sql catalog %s: %w", path, err)
		}
		return &ownedSQL{Catalog: cat, db: db}, nil
	case "rest":
		opts := []rest.Option{rest.WithAdditionalProps(props)}
		if cfg.Catalog.Warehouse != "" {
			opts = append(opts, rest.WithWarehouseLocation(cfg.Catalog.Warehouse))
		}
		if cfg.Catalog.Credential != "" {
			opts = append(opts, rest.WithCredential(cfg.Catalog.Credential))
		}
		if cfg.Catalog.Token != "" {
			opts = append(opts, rest.WithOAuthToken(cfg.Catalog.Token))
		}
		if _, err := url.Parse(cfg.Catalog.URI); err != nil {
			return nil, err
		}
		return rest.NewCatalog(ctx, cfg.Catalog.Name, cfg.Catalog.URI, opts...)
	case "glue":
		awsCfg, err := awsconf.Load(ctx, cfg.S3.Region, cfg.S3.AccessKeyID, cfg.S3.SecretAccessKey)
		if err != nil {
			return nil, err
		}
		return glue.NewCatalog(glue.WithAwsConfig(awsCfg), glue.WithAwsProperties(glue.AwsProperties(props)))
	}
	return nil, fmt.Errorf("unknown catalog type %q", cfg.Catalog.Type)
}

// ownedSQL is a SQL catalog whose database handle the sink opened, and
// closes.
type ownedSQL struct {
	*sqlcat.Catalog
	db *sql.DB
}

func (c *ownedSQL) Close() error {
	_ = c.Catalog.Close()
	return c.db.Close()
}
