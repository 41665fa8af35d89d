"""Create a bucket (S3) or container (Azure) on a local test server.

usage: mkbucket.py s3 ENDPOINT BUCKET | mkbucket.py az ENDPOINT CONTAINER
       mkbucket.py s3uploads ENDPOINT BUCKET  (print open multipart uploads)
       mkbucket.py s3abort ENDPOINT BUCKET  (abort every open multipart upload,
       as an AbortIncompleteMultipartUpload lifecycle rule does; prints them)
       mkbucket.py s3create ENDPOINT BUCKET KEY...  (start a multipart upload
       of each KEY, as another client would; prints them)
       mkbucket.py s3createpart ENDPOINT BUCKET KEY...  (the same, each with
       one part sent)
       mkbucket.py s3put ENDPOINT BUCKET KEY...  (empty objects with raw keys
       that object_store cannot write, such as `dir/` markers or `a//b`)
       mkbucket.py s3putbody ENDPOINT BUCKET KEY BODY  (one raw key with
       BODY as its bytes, such as a non-empty `photos/`)
       mkbucket.py azput ENDPOINT CONTAINER KEY BODY  (the same on Azure)
Credentials are the test servers' own well-known ones.
"""
import sys


def s3_client(endpoint):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


kind, endpoint, name = sys.argv[1:4]
if kind == "s3put":
    s3 = s3_client(endpoint)
    for key in sys.argv[4:]:
        s3.put_object(Bucket=name, Key=key, Body=b"")
elif kind == "s3putbody":
    key, body = sys.argv[4:6]
    s3_client(endpoint).put_object(Bucket=name, Key=key, Body=body.encode())
elif kind == "s3uploads":
    r = s3_client(endpoint).list_multipart_uploads(Bucket=name)
    for u in r.get("Uploads", []):
        print(u["Key"], u["UploadId"])
elif kind == "s3abort":
    s3 = s3_client(endpoint)
    for u in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=u["Key"], UploadId=u["UploadId"])
        print(u["Key"], u["UploadId"])
elif kind in ("s3create", "s3createpart"):
    s3 = s3_client(endpoint)
    for key in sys.argv[4:]:
        u = s3.create_multipart_upload(Bucket=name, Key=key)
        if kind == "s3createpart":
            s3.upload_part(
                Bucket=name, Key=key, UploadId=u["UploadId"], PartNumber=1, Body=b"other"
            )
        print(key, u["UploadId"])
elif kind == "s3":
    s3_client(endpoint).create_bucket(Bucket=name)
elif kind == "azput":
    from azure.storage.blob import BlobServiceClient

    account = "devstoreaccount1"
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
        f"BlobEndpoint={endpoint}/{account};"
    )
    blob, body = sys.argv[4:6]
    client = BlobServiceClient.from_connection_string(conn)
    client.get_blob_client(name, blob).upload_blob(body.encode(), overwrite=True)
elif kind == "az":
    from azure.storage.blob import BlobServiceClient

    account = "devstoreaccount1"
    key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={account};AccountKey={key};"
        f"BlobEndpoint={endpoint}/{account};"
    )
    BlobServiceClient.from_connection_string(conn).create_container(name)
else:
    sys.exit(f"unknown kind {kind}")
