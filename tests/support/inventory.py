"""Write an inventory report of a bucket or container, as AWS S3 Inventory
or Azure Blob Inventory lay theirs out, from a listing through the
server's own SDK (boto3, azure-storage-blob), not object_store: the test
then plans from the report and from a listing and compares.

usage: inventory.py s3|az ENDPOINT BUCKET OUTDIR csv|parquet

Prints the manifest's path. The report holds every listed object (S3:
split over two data files), plus rows a plan must skip: S3 a delete
marker and a row of another bucket (and a blank line at the end of a CSV
file); Azure a directory entry (hdi_isfolder), a soft-deleted blob and a
blob of another container. Formats, as the clouds document them:
  S3 CSV: gzip, no header (columns in the manifest's fileSchema), every
    field quoted, keys URL-encoded with '+' for a space;
  S3 Parquet: snake_case columns, size int64, last_modified_date
    timestamp(ms, UTC), keys as they are;
  Azure CSV: a header row, Name is CONTAINER/BLOB, times ISO 8601 with
    seven decimals, Content-MD5 base64, Metadata a JSON object, "Null"
    for no value; Azure Parquet: the same columns, times timestamp(ms).
"""
import base64
import csv
import datetime
import gzip
import hashlib
import io
import json
import os
import sys
import urllib.parse

import clients

WHEN = datetime.datetime(2026, 12, 1, 3, 0, tzinfo=datetime.timezone.utc)


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def parquet_bytes(columns, types):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({n: pa.array(v, type=types[n]) for n, v in columns.items()})
    out = io.BytesIO()
    pq.write_table(table, out, compression="snappy")
    return out.getvalue()


def s3_rows(endpoint, bucket):
    client = clients.s3(endpoint)
    rows = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            rows.append(
                {
                    "bucket": bucket,
                    "key": o["Key"],
                    "version_id": "",
                    "is_latest": True,
                    "is_delete_marker": False,
                    "size": o["Size"],
                    "last_modified_date": o["LastModified"],
                    "e_tag": o["ETag"].strip('"'),
                    "storage_class": o.get("StorageClass", "STANDARD"),
                }
            )
    rows.append(dict(rows[0], key="gone/marker", is_delete_marker=True, size=None, e_tag=None, storage_class=None))
    rows.append(dict(rows[0], bucket=bucket + "-other", key="elsewhere"))
    return rows


def s3(endpoint, bucket, out, fmt):
    rows = s3_rows(endpoint, bucket)
    base = f"inventory/{bucket}/config"
    halves = [rows[::2], rows[1::2]]
    files = []
    if fmt == "csv":
        schema = ["Bucket", "Key", "VersionId", "IsLatest", "IsDeleteMarker", "Size", "LastModifiedDate", "ETag", "StorageClass"]
        for i, half in enumerate(halves):
            text = io.StringIO()
            w = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
            for r in half:
                w.writerow(
                    [
                        r["bucket"],
                        urllib.parse.quote_plus(r["key"], safe="/"),
                        r["version_id"],
                        str(r["is_latest"]).lower(),
                        str(r["is_delete_marker"]).lower(),
                        "" if r["size"] is None else str(r["size"]),
                        r["last_modified_date"].strftime("%Y-%m-%dT%H:%M:%S.") + f"{r['last_modified_date'].microsecond // 1000:03d}Z",
                        r["e_tag"] or "",
                        r["storage_class"] or "",
                    ]
                )
            text.write("\n")
            files.append((f"{base}/data/part-{i}.csv.gz", gzip.compress(text.getvalue().encode())))
        file_format, file_schema = "CSV", ", ".join(schema)
    else:
        import pyarrow as pa

        types = {
            "bucket": pa.string(),
            "key": pa.string(),
            "version_id": pa.string(),
            "is_latest": pa.bool_(),
            "is_delete_marker": pa.bool_(),
            "size": pa.int64(),
            "last_modified_date": pa.timestamp("ms", tz="UTC"),
            "e_tag": pa.string(),
            "storage_class": pa.string(),
        }
        for i, half in enumerate(halves):
            cols = {n: [r[n] for r in half] for n in types}
            files.append((f"{base}/data/part-{i}.parquet", parquet_bytes(cols, types)))
        file_format = "Parquet"
        file_schema = "message s3.inventory {  required binary bucket (STRING);  required binary key (STRING);}"
    for key, data in files:
        write(os.path.join(out, key), data)
    manifest = {
        "sourceBucket": bucket,
        "destinationBucket": "arn:aws:s3:::inventory-destination",
        "version": "2016-11-30",
        "creationTimestamp": str(int(WHEN.timestamp() * 1000)),
        "fileFormat": file_format,
        "fileSchema": file_schema,
        "files": [{"key": k, "size": len(d), "MD5checksum": hashlib.md5(d).hexdigest()} for k, d in files],
    }
    text = json.dumps(manifest, indent=2).encode()
    path = os.path.join(out, base, "2026-12-01T03-00Z", "manifest.json")
    write(path, text)
    write(os.path.join(os.path.dirname(path), "manifest.checksum"), (hashlib.md5(text).hexdigest() + "\n").encode())
    print(path)


def az_rows(endpoint, container):
    client = clients.az_container(endpoint, container)
    rows = []
    for b in client.list_blobs(include=["snapshots", "metadata"]):
        md5 = b.content_settings.content_md5
        rows.append(
            {
                "Name": f"{container}/{b.name}",
                "Last-Modified": b.last_modified,
                "Content-Length": b.size,
                "Content-MD5": base64.b64encode(bytes(md5)).decode() if md5 else None,
                "BlobType": str(getattr(b.blob_type, "value", b.blob_type)),
                "AccessTier": str(getattr(b.blob_tier, "value", b.blob_tier)) if b.blob_tier else None,
                "Snapshot": b.snapshot,
                "VersionId": None,
                "IsCurrentVersion": None,
                "Metadata": json.dumps(b.metadata) if b.metadata else None,
                "hdi_isfolder": False,
                "Deleted": False,
            }
        )
    first = rows[0]
    rows.append(dict(first, Name=f"{container}/a-directory", hdi_isfolder=True, **{"Content-Length": 0}))
    rows.append(dict(first, Name=f"{container}/deleted-blob", Deleted=True))
    rows.append(dict(first, Name=f"{container}x/other-container"))
    return rows


def az(endpoint, container, out, fmt):
    rows = az_rows(endpoint, container)
    rule = "rule1"
    run = f"2026/12/01/03-00-00/{rule}"
    names = list(rows[0].keys())
    halves = [rows[::2], rows[1::2]]
    files = []
    for i, half in enumerate(halves):
        if fmt == "csv":
            text = io.StringIO()
            w = csv.writer(text, lineterminator="\r\n")
            w.writerow(names)
            for r in half:
                cells = []
                for n in names:
                    v = r[n]
                    if isinstance(v, datetime.datetime):
                        v = v.strftime("%Y-%m-%dT%H:%M:%S.") + f"{v.microsecond:06d}0Z"
                    elif isinstance(v, bool):
                        v = str(v).lower()
                    elif v is None:
                        v = "Null" if n in ("Snapshot", "VersionId") else ""
                    cells.append(v)
                w.writerow(cells)
            files.append((f"{run}/{rule}_1000000_{i}.csv", text.getvalue().encode()))
        else:
            import pyarrow as pa

            types = {n: pa.string() for n in names}
            types.update(
                {
                    "Last-Modified": pa.timestamp("ms", tz="UTC"),
                    "Content-Length": pa.int64(),
                    "hdi_isfolder": pa.bool_(),
                    "Deleted": pa.bool_(),
                    "IsCurrentVersion": pa.bool_(),
                }
            )
            cols = {n: [r[n] for r in half] for n in names}
            files.append((f"{run}/{rule}_1000000_{i}.parquet", parquet_bytes(cols, types)))
    for key, data in files:
        write(os.path.join(out, key), data)
    manifest = {
        "destinationContainer": "inventory-destination",
        "endpoint": endpoint,
        "files": [{"blob": k, "size": len(d)} for k, d in files],
        "inventoryCompletionTime": "2026-12-01T03:05:00Z",
        "inventoryStartTime": WHEN.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ruleDefinition": {
            "filters": {"blobTypes": ["blockBlob", "appendBlob"], "includeSnapshots": True},
            "format": fmt,
            "objectType": "blob",
            "schedule": "daily",
            "schemaFields": names,
        },
        "ruleName": rule,
        "status": "Succeeded",
        "summary": {"objectCount": len(rows), "totalObjectSize": sum(r["Content-Length"] or 0 for r in rows)},
        "version": "1.0",
    }
    path = os.path.join(out, run, f"{rule}-manifest.json")
    write(path, json.dumps(manifest, indent=2).encode())
    print(path)


kind, endpoint, name, out, fmt = sys.argv[1:6]
if kind == "s3":
    s3(endpoint, name, out, fmt)
elif kind == "az":
    az(endpoint, name, out, fmt)
else:
    sys.exit(f"unknown kind {kind}")
