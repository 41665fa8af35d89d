"""Write a large S3 Inventory report (bench/src/plan.rs): N objects
k/0000000 … under OUT/csv (gzip CSV, 10 data files) and OUT/parquet
(Parquet, snappy, 10 data files), each with its manifest.json. Every
object has its own MD5 ETag (the duplicate table holds N contents), a
size from 1 B to 1 MiB, one in 1,000 is GLACIER.

usage: inventory_big.py N OUT   (prints the two manifests' paths)
"""
import gzip
import hashlib
import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq

n, out = int(sys.argv[1]), sys.argv[2]
FILES = 10
BUCKET = "src"
WHEN = 1764558000000


def rows(part):
    for j in range(part, n, FILES):
        yield (
            f"k/{j:07}",
            1 + (j * 7919) % (1 << 20),
            WHEN - j,
            hashlib.md5(str(j).encode()).hexdigest(),
            "GLACIER" if j % 1000 == 999 else "STANDARD",
        )


def manifest(fmt, schema, files, base):
    text = json.dumps(
        {
            "sourceBucket": BUCKET,
            "destinationBucket": "arn:aws:s3:::inventory",
            "version": "2016-11-30",
            "creationTimestamp": str(WHEN),
            "fileFormat": fmt,
            "fileSchema": schema,
            "files": files,
        }
    ).encode()
    path = os.path.join(base, "2025-12-01T03-00Z", "manifest.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(text)
    print(path)


def entry(base, key, data):
    path = os.path.join(base, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return {"key": key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()}


base = os.path.join(out, "csv")
files = []
for p in range(FILES):
    lines = "".join(
        f'"{BUCKET}","{k}","{s}","{t}","{e}","{c}"\n'
        for k, s, t, e, c in (
            (k, s, f"2025-11-{1 + (m // 86400000) % 28:02}T00:00:00.000Z", e, c) for k, s, m, e, c in rows(p)
        )
    )
    files.append(entry(base, f"data/{p}.csv.gz", gzip.compress(lines.encode(), 6)))
manifest("CSV", "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass", files, base)

base = os.path.join(out, "parquet")
files = []
for p in range(FILES):
    cols = list(zip(*rows(p)))
    table = pa.table(
        {
            "bucket": pa.array([BUCKET] * len(cols[0]), pa.string()),
            "key": pa.array(cols[0], pa.string()),
            "size": pa.array(cols[1], pa.int64()),
            "last_modified_date": pa.array(cols[2], pa.timestamp("ms", tz="UTC")),
            "e_tag": pa.array(cols[3], pa.string()),
            "storage_class": pa.array(cols[4], pa.string()),
        }
    )
    path = os.path.join(base, "data", f"{p}.parquet")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path, compression="snappy")
    with open(path, "rb") as f:
        files.append(entry(base, f"data/{p}.parquet", f.read()))
manifest("Parquet", "message s3.inventory { }", files, base)
