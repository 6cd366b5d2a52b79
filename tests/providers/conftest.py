"""The provider suites never reach beyond loopback, also through the AWS and Google chains.

Bedrock's ``auth: aws`` ends its chain at the instance metadata service, a
link-local address: that probe is off in these test processes (and the ones
they start), and the developer's own AWS files are never read. Vertex AI's
``auth: google`` ends google-auth's chain at the GCE metadata server: it is
pointed at a closed loopback port (tests that serve one set their own), and
the developer's gcloud configuration and key file are never read.
"""

from __future__ import annotations

import os
import tempfile

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["GCE_METADATA_HOST"] = os.environ["GCE_METADATA_IP"] = "127.0.0.1:9"
os.environ["CLOUDSDK_CONFIG"] = tempfile.mkdtemp(prefix="skyroute-no-gcloud-")
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
