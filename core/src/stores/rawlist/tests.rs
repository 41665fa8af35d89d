//! Parsing listings as the stores answer them.

use super::*;

#[test]
fn s3_keys_come_back_byte_for_byte() -> object_store::Result<()> {
    let xml = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><Contents><Key>m//x</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><ETag>&quot;abc&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><Key>photos/</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><ETag>"d"</ETag><Size>0</Size></Contents><Contents><Key>caf%C3%A9%20%2Bx</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><Size>1</Size></Contents><Contents><Key>a+b%2Bc%25</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><Size>1</Size></Contents><NextContinuationToken>tok</NextContinuationToken></ListBucketResult>"#;
    let (e, next) = parse_s3(xml)?.into_entries(true, false)?;
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    // AWS writes a space as `+` (others as %20); a literal `+` is %2B.
    assert_eq!(keys, ["m//x", "photos/", "café +x", "a b+c%"]);
    assert_eq!(e[0].etag.as_deref(), Some("\"abc\""));
    assert_eq!(e[0].size, 3);
    assert_eq!(next.as_deref(), Some("tok"));
    Ok(())
}

#[test]
fn a_truncated_s3_page_without_a_token_is_an_error() {
    let xml = br#"<ListBucketResult><IsTruncated>true</IsTruncated><Contents><Key>a</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><Size>1</Size></Contents></ListBucketResult>"#;
    assert!(
        parse_s3(xml).is_err(),
        "would end the listing as if complete"
    );
    let last = br#"<ListBucketResult><IsTruncated>false</IsTruncated><NextContinuationToken></NextContinuationToken></ListBucketResult>"#;
    assert!(parse_s3(last).is_ok_and(|p| p.contents.is_empty() && p.next.is_none()));
}

/// Keys taken as listed stay byte for byte (what a server that echoes
/// `EncodingType=url` gets; which servers do is decided against the
/// server itself: `conformance::s3s_fs_keys_with_plus_and_percent_list_as_they_are`).
#[test]
fn keys_taken_as_listed_are_not_decoded() -> object_store::Result<()> {
    let xml = "<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated><Contents><Key>k/a+b=c&amp;d%41</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><Size>1</Size></Contents></ListBucketResult>";
    let page = parse_s3(xml.as_bytes())?;
    assert!(page.url_encoded);
    let (e, _) = page.into_entries(false, false)?;
    assert_eq!(e[0].key, "k/a+b=c&d%41");
    Ok(())
}

#[test]
fn azure_names_come_back_byte_for_byte() -> object_store::Result<()> {
    let xml = b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"http://x/\" ContainerName=\"c\"><Blobs><Blob><Name>/lead</Name><Properties><Last-Modified>Mon, 30 Nov 2026 10:00:00 GMT</Last-Modified><Etag>0x8D</Etag><Content-Length>7</Content-Length><BlobType>BlockBlob</BlobType></Properties></Blob><Blob><Name>a/./b</Name><Properties><Last-Modified>Mon, 30 Nov 2026 10:00:00 GMT</Last-Modified><Etag>0x8E</Etag><Content-Length>0</Content-Length></Properties></Blob><Blob><Name Encoded=\"true\">bell%07%20x</Name><Properties><Last-Modified>Mon, 30 Nov 2026 10:00:00 GMT</Last-Modified><Etag>0x8F</Etag><Content-Length>1</Content-Length></Properties></Blob><Blob><Name Encoded=\"false\"> plain+name </Name><Properties><Last-Modified>Mon, 30 Nov 2026 10:00:00 GMT</Last-Modified><Etag>0x90</Etag><Content-Length>1</Content-Length></Properties></Blob></Blobs><NextMarker /></EnumerationResults>";
    let (e, next) = parse_azure(xml, false)?;
    let keys: Vec<&str> = e.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["/lead", "a/./b", "bell\u{7} x", " plain+name "]);
    assert_eq!(e[0].size, 7);
    assert!(next.is_none());
    Ok(())
}

#[test]
fn azure_details_say_tier_type_snapshot_version_and_metadata() -> object_store::Result<()> {
    let xml = br#"<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs><Blob><Name>a</Name><Snapshot>2026-12-01T10:00:00.0000000Z</Snapshot><Properties><Last-Modified>Mon, 30 Nov 2026 10:00:00 GMT</Last-Modified><Etag>0x1</Etag><Content-Length>3</Content-Length><Content-MD5>rL0Y20zC+Fzt72VPzMSk2A==</Content-MD5><BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier></Properties><Metadata /></Blob><Blob><Name>a</Name><VersionId>v1</VersionId><Properties><Last-Modified>Mon, 30 Nov 2026 10:00:00 GMT</Last-Modified><Etag>0x2</Etag><Content-Length>4</Content-Length><BlobType>BlockBlob</BlobType><AccessTier>Archive</AccessTier><ArchiveStatus>rehydrate-pending-to-hot</ArchiveStatus></Properties></Blob><Blob><Name>a</Name><VersionId>v2</VersionId><IsCurrentVersion>true</IsCurrentVersion><Properties><Last-Modified>Mon, 30 Nov 2026 10:00:00 GMT</Last-Modified><Etag>0x3</Etag><Content-Length>5</Content-Length><Content-MD5 /><BlobType>AppendBlob</BlobType></Properties><Metadata><owner>ops</owner><Project_1>x y</Project_1></Metadata></Blob></Blobs><NextMarker /></EnumerationResults>"#;
    let (e, _) = parse_azure(xml, true)?;
    let d: Vec<Details> = e
        .iter()
        .map(|e| *e.details.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        d[0].snapshot.as_deref(),
        Some("2026-12-01T10:00:00.0000000Z")
    );
    assert!(!d[0].current);
    assert_eq!(
        d[0].content_md5.as_deref(),
        Some("rL0Y20zC+Fzt72VPzMSk2A==")
    );
    assert_eq!(d[0].metadata.as_deref(), Some(&[][..]));
    assert_eq!((d[1].version.as_deref(), d[1].current), (Some("v1"), false));
    assert_eq!(d[1].class.as_deref(), Some("Archive"));
    assert_eq!(
        d[1].archive_status.as_deref(),
        Some("rehydrate-pending-to-hot")
    );
    assert!(d[2].current);
    assert_eq!(d[2].content_md5, None);
    assert_eq!(d[2].blob_type.as_deref(), Some("AppendBlob"));
    assert_eq!(
        d[2].metadata,
        Some(vec![
            ("Project_1".into(), "x y".into()),
            ("owner".into(), "ops".into())
        ])
    );
    // Without details nothing more is kept.
    let (e, _) = parse_azure(xml, false)?;
    assert!(e.iter().all(|e| e.details.is_none()));
    Ok(())
}

#[test]
fn s3_details_say_the_storage_class() -> object_store::Result<()> {
    let xml = br#"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a</Key><LastModified>2026-11-30T10:00:00.000Z</LastModified><ETag>"x"</ETag><Size>1</Size><StorageClass>DEEP_ARCHIVE</StorageClass></Contents></ListBucketResult>"#;
    let (e, _) = parse_s3(xml)?.into_entries(false, true)?;
    let d = e[0].details.as_deref().cloned().unwrap_or_default();
    assert_eq!(
        (d.class.as_deref(), d.current),
        (Some("DEEP_ARCHIVE"), true)
    );
    Ok(())
}
