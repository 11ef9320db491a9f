module github.com/firehose/firehose

go 1.26

require github.com/linkedin/goavro/v2 v2.15.0

require (
	github.com/dustin/go-humanize v1.1.0 // indirect
	github.com/golang/snappy v0.0.1 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
)
