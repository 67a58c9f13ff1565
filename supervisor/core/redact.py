"""No credential material in a message: the one helper every edge where an exception's text
becomes a message (s3.describe, http's ping errors, Docker's) passes that text through.

A presigned S3 URL carries `X-Amz-Credential` (the access key id) and `X-Amz-Signature` (good
for listing the bucket until it expires) in its query string; a URL's userinfo is a password;
botocore, urllib3 and requests put the URL they were sending into their exception texts. So
every URL in the text loses its userinfo, query string and fragment (`http://host/bucket?...`),
and what is left of a signed request elsewhere (an Authorization header's `Credential=` and
`Signature=`, a loose `X-Amz-*=` parameter, an access key id) is masked.
"""

from __future__ import annotations

import re

MASK = "[redacted]"

# scheme://[userinfo@]host/path[?query][#fragment], ended by whitespace or a quote.
_URL = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://)(?:[^\s/?#\"'<>@]*@)?"
                  r"(?P<rest>[^\s?#\"'<>]*)(?P<tail>[?#][^\s\"'<>]*)?")
# A signed request's parts outside a URL, and AWS access key ids (AKIA…, ASIA… for STS).
_SIGNED = re.compile(r"\b(?:X-Amz-[A-Za-z-]+|Credential|Signature)=[^\s&,;\"'<>]*")
_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")


def redact(text: str) -> str:
    """`text` with every URL's userinfo, query string and fragment cut (`?...` marks a cut
    query) and signed-request parameters and access key ids masked."""
    text = _URL.sub(lambda m: m["head"] + m["rest"] + ("?..." if m["tail"] else ""), text)
    text = _SIGNED.sub(MASK, text)
    return _KEY_ID.sub(MASK, text)
