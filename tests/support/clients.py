"""The test servers' SDK clients (boto3, azure-storage-blob), with the
well-known credentials the servers accept; shared by the support scripts,
which import it from their own directory."""

AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def s3(endpoint, **extra):
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        **extra,
    )


def az_container(endpoint, container):
    from azure.storage.blob import BlobServiceClient

    conn = (
        f"DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};"
        f"BlobEndpoint={endpoint}/{AZ_ACCOUNT};"
    )
    return BlobServiceClient.from_connection_string(conn).get_container_client(container)
