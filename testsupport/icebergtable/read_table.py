"""Reads an Iceberg table the way an engine does, with none of Firehose's
code: the SQL catalog's row (sqlite3), the table's metadata JSON, the
manifest list and the manifests (Avro, through Debian's python3-avro).
With a fourth argument s3://bucket/=dir, reads that bucket's objects from
dir (an S3 server's store on disk). Prints JSON: the metadata location, the current snapshot's summary, every
snapshot's summary, and the live data files of the current snapshot."""
import datetime
import json
import sqlite3
import sys
import warnings

import avro.datafile
import avro.io


warnings.simplefilter("ignore")


def plain(v):
    """A partition value as the manifest holds it: a date (day) is days
    since 1970-01-01, a datetime microseconds."""
    if isinstance(v, datetime.datetime):
        return int(v.timestamp() * 1000000)
    if isinstance(v, datetime.date):
        return (v - datetime.date(1970, 1, 1)).days
    return v


PREFIX = None  # (s3://bucket/, the bucket's directory): an S3 store's files on disk


def local(path):
    if PREFIX and path.startswith(PREFIX[0]):
        return PREFIX[1] + path[len(PREFIX[0]):]
    return path[len("file://"):] if path.startswith("file://") else path


def records(path):
    with open(local(path), "rb") as f:
        reader = avro.datafile.DataFileReader(f, avro.io.DatumReader())
        try:
            return list(reader)
        finally:
            reader.close()


def main():
    global PREFIX
    db, namespace, name = sys.argv[1:4]
    if len(sys.argv) > 4:
        PREFIX = tuple(sys.argv[4].split("=", 1))
    try:
        row = sqlite3.connect(db).execute(
            "select metadata_location from iceberg_tables where table_namespace = ? and table_name = ?",
            (namespace, name)).fetchone()
    except sqlite3.OperationalError as e:  # no catalog yet
        print(json.dumps({"error": str(e)}))
        return
    if row is None:
        print(json.dumps({"error": "no such table"}))
        return
    with open(local(row[0])) as f:
        meta = json.load(f)
    out = {"metadata_location": row[0], "format_version": meta["format-version"],
           "schema": [f["name"] for f in next(s for s in meta["schemas"] if s["schema-id"] == meta["current-schema-id"])["fields"]],
           "partition_spec": meta["partition-specs"][0]["fields"],
           "snapshots": [s["summary"] for s in meta.get("snapshots", [])], "files": [], "records": 0}
    current = meta.get("current-snapshot-id")
    snap = next((s for s in meta.get("snapshots", []) if s["snapshot-id"] == current), None)
    if snap is not None:
        out["summary"] = snap["summary"]
        for m in records(snap["manifest-list"]):
            if m.get("content", 0) != 0:
                continue
            for e in records(m["manifest_path"]):
                if e["status"] == 2:  # deleted
                    continue
                df = e["data_file"]
                out["files"].append({"path": local(df["file_path"]), "records": df["record_count"],
                                     "partition": {k: plain(v) for k, v in df["partition"].items()}})
                out["records"] += df["record_count"]
    print(json.dumps(out))


main()
