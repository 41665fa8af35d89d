"""Read a bucket or container back through the server's own SDK (boto3,
azure-storage-blob), independently of object_store and of passeur.

usage: sdk.py s3 ENDPOINT BUCKET | sdk.py az ENDPOINT CONTAINER

Prints one JSON line per object, in listing order:
{"key": KEY, "size": BYTES READ, "md5": HEX OF THE BYTES READ}
Keys are listed raw: S3 is asked without EncodingType (boto3 would add
EncodingType=url, and s3s-fs echoes it over keys it did not encode), and
response checksums are not validated by boto3 (s3s-fs may keep a stale
x-amz-checksum-sha256 after a multipart overwrite): the MD5 of the bytes,
compared by the caller, decides. Credentials are the test servers' own
well-known ones.
"""
import hashlib
import json
import sys


def emit(key, chunks):
    h = hashlib.md5()
    size = 0
    for c in chunks:
        h.update(c)
        size += len(c)
    print(json.dumps({"key": key, "size": size, "md5": h.hexdigest()}))


def s3_client(endpoint):
    """A boto3 S3 client of the test servers: path-style, their well-known
    credentials, checksums only where the API requires them."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(
            s3={"addressing_style": "path"},
            response_checksum_validation="when_required",
            request_checksum_calculation="when_required",
        ),
    )


def s3(endpoint, bucket):
    import botocore.handlers

    client = s3_client(endpoint)
    client.meta.events.unregister(
        "before-parameter-build.s3.ListObjectsV2",
        botocore.handlers.set_list_objects_encoding_type_url,
    )
    token = None
    while True:
        args = {"Bucket": bucket}
        if token:
            args["ContinuationToken"] = token
        page = client.list_objects_v2(**args)
        for o in page.get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=o["Key"])["Body"]
            emit(o["Key"], iter(lambda: body.read(1 << 20), b""))
        if not page.get("IsTruncated"):
            break
        token = page["NextContinuationToken"]


def az(endpoint, container):
    from azure.storage.blob import BlobServiceClient

    account = "devstoreaccount1"
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
        f"BlobEndpoint={endpoint}/{account};"
    )
    client = BlobServiceClient.from_connection_string(conn).get_container_client(container)
    for b in client.list_blobs():
        emit(b.name, client.download_blob(b.name).chunks())


if __name__ == "__main__":
    kind, endpoint, name = sys.argv[1:4]
    if kind == "s3":
        s3(endpoint, name)
    elif kind == "az":
        az(endpoint, name)
    else:
        sys.exit(f"unknown kind {kind}")
