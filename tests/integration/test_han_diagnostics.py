"""Fault diagnosis by the service technician over the HAN (seed 003 §6, table 4), over real
TLS on 127.0.0.1. Test names follow the table's steps."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from imsys.core.clock import SystemClock
from imsys.core.errors import TlsRejected
from imsys.crypto import SoftwareKey
from imsys.crypto.tls import TlsIdentity
from imsys.gateway.admin import ConfigKind, ConfigStore, ItemState
from imsys.gateway.diagnostics import DiagnosticsSources
from imsys.gateway.han_diagnostics import HanDiagnosticsServer, TechnicianClient
from imsys.gateway.logs import ConsumerEvent, GatewayLogs, Level, Outcome, SystemEvent
from imsys.gateway.store import Database
from imsys.pki import PkiDirectory
from imsys.pki.validation import PathValidator

GATEWAY_ID = "EIMS0055667788"
IssueFn = Callable[..., tuple[SoftwareKey, x509.Certificate]]
AES_KEY = "00112233445566778899aabbccddeeff"


class DirectoryCrls:
    """The PKI directory's current CRLs (a revocation is seen at once, as with a CRL
    distribution point)."""

    def __init__(self, pki: PkiDirectory) -> None:
        self.pki = pki

    def crl_for(self, cert: x509.Certificate, issuer: x509.Certificate
                ) -> x509.CertificateRevocationList | None:
        for name in self.pki.ca_names:
            if self.pki.ca(name).certificate.subject == issuer.subject:
                return self.pki.crl(name)
        return None


def live_validator(pki: PkiDirectory) -> PathValidator:
    return PathValidator([pki.root.certificate],
                         [pki.ca(n).certificate for n in pki.ca_names[1:]], DirectoryCrls(pki),
                         clock=SystemClock())


@dataclass
class Han:
    server: HanDiagnosticsServer
    pki: PkiDirectory
    db_path: str
    issue: IssueFn

    def identity(self, profile: str, name: str) -> TlsIdentity:
        key, cert = self.issue(profile, name)
        return TlsIdentity((cert, *self.pki.chain()[:-1]), key)

    def technician(self, name: str = "Techniker-1") -> TechnicianClient:
        return TechnicianClient(self.server.address, self.identity("technician-tls", name),
                                self.pki.validator())

    def system_log(self) -> list[tuple[Outcome, str]]:
        db = Database(self.db_path)
        try:
            return [(e.outcome, e.text) for e in GatewayLogs(db, SystemClock()).system.entries()]
        finally:
            db.close()


@pytest.fixture
def han(tmp_path: Path, pki: PkiDirectory, issue: IssueFn) -> Iterator[Han]:
    db_path = str(tmp_path / "gateway.db")
    clock = SystemClock()
    db = Database(db_path)
    config, logs = ConfigStore(db), GatewayLogs(db, clock)
    config.put(ConfigKind.CONSUMER, "LV-Mueller", {"consumer_id": "LV-Mueller",
                                                    "label": "Erika Mueller"},
               state=ItemState.ACTIVE)
    config.put(ConfigKind.METER, "1EMH0012345678", {
        "meter_id": "1EMH0012345678", "protocol": "wmbus-mode5", "aes_key": AES_KEY,
        "consumer_id": "LV-Mueller", "channels": ["1-0:1.8.0*255"], "read_interval_s": 900,
        "endpoint": None, "pull_request": "get-list"}, state=ItemState.ACTIVE)
    config.put(ConfigKind.METER, "1EMH0087654321", {
        "meter_id": "1EMH0087654321", "protocol": "sml-tls-pull", "consumer_id": "LV-Mueller",
        "channels": ["1-0:1.8.0*255", "1-0:2.8.0*255"], "read_interval_s": 900,
        "endpoint": "192.168.7.20:7259", "pull_request": "get-list"})
    logs.consumer("LV-Mueller").append(Level.INFO, Outcome.SUCCESS, "reading 1234.5 kWh sent",
                                       event=ConsumerEvent.DATA_TRANSMISSION)
    logs.system.append(Level.ERROR, Outcome.FAILURE, "meter did not answer",
                       event=SystemEvent.TLS_FAILURE)
    db.close()
    gw_key, gw_cert = issue("gateway-tls", GATEWAY_ID)
    _, revoked_sig = issue("gateway-sig", "EIMS-revoked-sig")
    pki.revoke(revoked_sig.serial_number, "superseded")

    def sources() -> DiagnosticsSources:
        thread_db = Database(db_path)
        return DiagnosticsSources(
            GATEWAY_ID, ConfigStore(thread_db), GatewayLogs(thread_db, clock), clock,
            live_validator(pki),
            certificates=lambda: [("GW_WAN_TLS_CRT", gw_cert), ("GW_WAN_SIG_CRT", revoked_sig)],
            connections=lambda: [{"peer": "GWA", "interface": "wan", "tls": "established",
                                  "application": "admin-session"}],
            visible_meters=lambda: {"1EMH0087654321"})

    server = HanDiagnosticsServer(TlsIdentity((gw_cert, *pki.chain()[:-1]), gw_key),
                                  live_validator(pki), sources, idle_timeout=10).start()
    yield Han(server, pki, db_path, issue)
    server.stop()


def test_step_2_2_to_2_5_technician_with_sm_pki_certificate_is_accepted(han: Han) -> None:
    with han.technician() as client:
        answer = client.ask("diagnostics")
    assert answer["ok"] is True and answer["gateway_id"] == GATEWAY_ID
    log = han.system_log()
    assert (Outcome.SUCCESS, next(t for _, t in log if "logged on at the HAN" in t)) in log


def test_step_2_5_technician_without_valid_certificate_is_refused(han: Han,
                                                                  tmp_path: Path) -> None:
    # a certificate from outside the SM-PKI: the TLS handshake fails
    foreign = PkiDirectory.init(tmp_path / "foreign")
    key, cert = foreign.issue_with_new_key("technician-tls", "Fake-Techniker")
    with pytest.raises((ssl.SSLError, ConnectionError, TlsRejected)):
        TechnicianClient(han.server.address, TlsIdentity((cert, *foreign.chain()[:-1]), key),
                         han.pki.validator())
    # an SM-PKI certificate of another role (a consumer's HAN certificate)
    consumer = TechnicianClient(han.server.address,
                                han.identity("consumer-tls", "LV-Mueller-han"),
                                han.pki.validator())
    assert consumer.ask("diagnostics") == {"ok": False, "error": "certificate-refused"}
    consumer.close()
    # a revoked technician certificate
    key, revoked = han.issue("technician-tls", "Techniker-revoked")
    han.pki.revoke(revoked.serial_number, "key_compromise")
    client = TechnicianClient(han.server.address,
                              TlsIdentity((revoked, *han.pki.chain()[:-1]), key),
                              han.pki.validator(require_crl=False))
    assert client.ask("diagnostics")["error"] == "certificate-refused"
    client.close()
    refusals = [t for o, t in han.system_log() if o is Outcome.FAILURE and "refused" in t]
    assert any("TLS handshake failed" in t for t in refusals)
    assert any("reason=wrong-role" in t for t in refusals)
    assert any("reason=revoked" in t for t in refusals)
    assert han.server.sessions == 0


def test_step_2_6_diagnostics_show_meters_certificates_connections_and_errors(han: Han) -> None:
    with han.technician() as client:
        report = client.ask("diagnostics")
    meters = {m["meter_id"]: m for m in report["meters"]}
    assert meters["1EMH0087654321"]["endpoint"] == "192.168.7.20:7259"
    assert meters["1EMH0087654321"]["visible"] is True
    assert meters["1EMH0012345678"]["visible"] is False
    certificates = {c["label"]: c for c in report["certificates"]}
    assert certificates["GW_WAN_TLS_CRT"]["status"] == "valid"
    assert certificates["GW_WAN_SIG_CRT"]["status"] == "revoked"
    assert report["connections"][0]["tls"] == "established"
    assert any(e["text"] == "meter did not answer" for e in report["errors"])
    # never readings or consumer data
    text = str(report)
    for secret in ("LV-Mueller", "Erika", "1234.5", AES_KEY, "consumer_id"):
        assert secret not in text


def test_step_2_6_technician_asking_for_readings_is_refused(han: Han) -> None:
    with han.technician() as client:
        for request in ({"request": "readings"}, {"request": "consumer-log"},
                        {"request": "set", "meter": "1EMH0012345678"},
                        {"request": "diagnostics", "consumer": "LV-Mueller"}, "not json"):
            answer = client.ask(request) if isinstance(request, dict) else client.ask(
                {"request": request})
            assert answer["ok"] is False and answer["error"] == "read-only-diagnostics"
        assert client.ask("meters")["ok"] is True  # the session goes on, read-only
    refused = [t for o, t in han.system_log() if "request refused" in t]
    assert len(refused) == 5 and all(o is Outcome.FAILURE for o, t in han.system_log()
                                     if "request refused" in t)


def test_step_2_7_logout_ends_the_session(han: Han) -> None:
    client = han.technician()
    assert client.ask("errors")["ok"] is True
    assert client.logout() == {"ok": True, "logout": True}
    texts = [t for _, t in han.system_log()]
    assert texts.index(next(t for t in texts if "logged off" in t)) > \
        texts.index(next(t for t in texts if "read diagnostics" in t))


def test_step_4_4_every_technician_action_is_logged(han: Han) -> None:
    before = len(han.system_log())
    client = han.technician("Techniker-2")
    client.ask("meters")
    client.ask("certificates")
    client.ask({"request": "readings"})
    client.logout()
    new = han.system_log()[before:]
    assert [t.rsplit(" (", 1)[0] for _, t in new] == [
        "service technician logged on at the HAN (diagnostics)",
        "service technician read diagnostics",
        "service technician read diagnostics",
        "service technician request refused: only read-only diagnostics",
        "service technician logged off"]
    serials = {t.split("technician_serial=")[1].rstrip(")").split(",")[0] for _, t in new}
    assert len(serials) == 1
