"""Write and read S3 objects' attributes as another client would (boto3),
independently of object_store and of passeur.

usage: attrs.py put ENDPOINT BUCKET KEY BODY TYPE META_JSON
           one object: BODY as its bytes, Content-Type TYPE, user metadata
       attrs.py remeta ENDPOINT BUCKET KEY TYPE META_JSON
           the object copied onto itself with new Content-Type and metadata
           (MetadataDirective REPLACE): its bytes, and so its ETag, stay
       attrs.py head ENDPOINT BUCKET KEY
           prints {"etag", "content_type", "metadata"} as JSON
Credentials are the test servers' own well-known ones.
"""
import json
import sys

from sdk import s3_client

cmd, endpoint, bucket, key = sys.argv[1:5]
s3 = s3_client(endpoint)
if cmd == "put":
    body, ctype, meta = sys.argv[5:8]
    s3.put_object(
        Bucket=bucket, Key=key, Body=body.encode(), ContentType=ctype, Metadata=json.loads(meta)
    )
elif cmd == "remeta":
    ctype, meta = sys.argv[5:7]
    s3.copy_object(
        Bucket=bucket,
        Key=key,
        CopySource={"Bucket": bucket, "Key": key},
        MetadataDirective="REPLACE",
        ContentType=ctype,
        Metadata=json.loads(meta),
    )
elif cmd == "head":
    h = s3.head_object(Bucket=bucket, Key=key)
    print(
        json.dumps(
            {
                "etag": h["ETag"].strip('"'),
                "content_type": h.get("ContentType"),
                "metadata": h.get("Metadata", {}),
            }
        )
    )
else:
    sys.exit(f"unknown command {cmd}")
