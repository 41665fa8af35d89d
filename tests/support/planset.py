"""Build a dataset for `passeur plan` through the server's own SDK
(azure-storage-blob, boto3): what object_store cannot make (archive tier,
append blobs, snapshots, storage classes, multipart ETags, metadata).

usage: planset.py az|s3 ENDPOINT CONTAINER < SPECS

SPECS is a JSON list of objects, each:
  key, size, fill (one character: the bytes are it repeated, so equal
  fill and size are equal content), and optionally
  append (Azure append blob), tier (Azure access tier set after upload),
  snapshots (Azure: how many), class (S3 storage class),
  parts (S3: uploaded in this many parts), metadata (name -> value).
"""
import json

import clients
import sys



def body(spec):
    return (spec["fill"].encode() * spec["size"])[: spec["size"]]


def az(endpoint, container, specs):
    client = clients.az_container(endpoint, container)
    for s in specs:
        blob = client.get_blob_client(s["key"])
        meta = s.get("metadata") or None
        if s.get("append"):
            blob.create_append_blob(metadata=meta)
            if s["size"]:
                blob.append_block(body(s))
        else:
            blob.upload_blob(body(s), overwrite=True, metadata=meta)
        for _ in range(s.get("snapshots", 0)):
            blob.create_snapshot()
        if s.get("tier"):
            blob.set_standard_blob_tier(s["tier"])


def s3(endpoint, bucket, specs):
    client = clients.s3(endpoint)
    for s in specs:
        extra = {"StorageClass": s.get("class", "STANDARD")}
        if s.get("metadata"):
            extra["Metadata"] = s["metadata"]
        data = body(s)
        parts = s.get("parts", 1)
        if parts == 1:
            client.put_object(Bucket=bucket, Key=s["key"], Body=data, **extra)
            continue
        up = client.create_multipart_upload(Bucket=bucket, Key=s["key"], **extra)
        size = -(-len(data) // parts)
        done = []
        for i in range(parts):
            r = client.upload_part(
                Bucket=bucket,
                Key=s["key"],
                UploadId=up["UploadId"],
                PartNumber=i + 1,
                Body=data[i * size : (i + 1) * size],
            )
            done.append({"PartNumber": i + 1, "ETag": r["ETag"]})
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=s["key"],
            UploadId=up["UploadId"],
            MultipartUpload={"Parts": done},
        )


kind, endpoint, name = sys.argv[1:4]
specs = json.load(sys.stdin)
if kind == "az":
    az(endpoint, name, specs)
elif kind == "s3":
    s3(endpoint, name, specs)
else:
    sys.exit(f"unknown kind {kind}")
