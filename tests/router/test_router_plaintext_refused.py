"""A router dials its control plane in plaintext only when told to (issue 15).

Without ``--control-ca``/``--identity`` the router refuses to start unless
``--insecure`` says plaintext explicitly; both at once is a contradiction.
"""

from __future__ import annotations

import pytest

from skyroute.cli.main import main


def test_no_tls_flags_and_no_insecure_refuses_to_start() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["router", "--control", "127.0.0.1:1"])
    message = str(caught.value.code)
    assert "--control-ca" in message and "--insecure" in message


def test_insecure_with_tls_flags_is_refused(tmp_path: object) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["router", "--insecure", "--control-ca", "ca.crt", "--identity", "r"])
    assert "exclude each other" in str(caught.value.code)
