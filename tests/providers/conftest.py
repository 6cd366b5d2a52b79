"""The provider suites never reach beyond loopback, also through the AWS credential chain.

Bedrock's ``auth: aws`` ends its chain at the instance metadata service, a
link-local address: that probe is off in these test processes (and the ones
they start), and the developer's own AWS files are never read.
"""

from __future__ import annotations

import os

os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
