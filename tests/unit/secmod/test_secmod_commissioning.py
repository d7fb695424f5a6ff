"""Seed 003 §2.3.1-§2.3.3 step by step; the module's objects must match the seed's summaries.

Provenance: TR-03109-1 annex "Betriebsprozesse" (seeds/003_7a790ea296d9c4d2.txt), the lists
"Zusammenfassung des am Ende dieser Phase vorliegenden Schlüssel- und Zertifikatsmaterials –
Im Sicherheitsmodul" after §2.3.1.3 and after §2.3.3. Key pairs are written as the seed names
them (private, public) and mapped with the label convention.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec
from secmod_helpers import SYSTEM_PIN, Administrator, ModuleOpener, make_certificate, make_root

from imsys.crypto.primitives import SoftwareKey, ecdsa_verify
from imsys.secmod import (
    STORAGE_KEY_LABEL,
    SYSTEM_PIN_LABEL,
    ObjectKind,
    Phase,
    SecurityModule,
    key_pair_label,
    wrap_key_for_import,
)

K, P, C = ObjectKind.KEY_PAIR, ObjectKind.PUBLIC_KEY, ObjectKind.CERTIFICATE

#: "Im Sicherheitsmodul" at the end of §2.3.1 (pre-personalisation and integration).
SUMMARY_2_3_1: dict[str, ObjectKind] = {
    SYSTEM_PIN_LABEL: ObjectKind.PIN_REFERENCE,  # Gateway-System-PIN (Referenzwert)
    STORAGE_KEY_LABEL: ObjectKind.SECRET,  # ggf. Schlüssel für die Speicherverschlüsselung
    "ROOT_WAN_SIG_CRT": C,
    key_pair_label("GW_WAN_TLS_PRV_PRE"): K,  # (GW_WAN_TLS_PRV_PRE, GW_WAN_TLS_PUB_PRE)
    key_pair_label("GW_WAN_SIG_PRV_PRE"): K,
    key_pair_label("GW_WAN_ENC_PRV_PRE"): K,
    "GW_WAN_TLS_CRT_PRE": C,  # Gütesiegel-Zertifikate
    "GW_WAN_SIG_CRT_PRE": C,
    "GW_WAN_ENC_CRT_PRE": C,
    "GWADM_TLS_PUB": P,  # Public Keys des SMGW-Admin
    "GWADM_SIG_PUB": P,
    "GWADM_ENC_PUB": P,
    "GWADM_AUT_PUB": P,
}
#: "Im Sicherheitsmodul" at the end of §2.3.3 (personalisation): plus the operational keys.
SUMMARY_2_3_3: dict[str, ObjectKind] = {
    **SUMMARY_2_3_1,
    key_pair_label("GW_WAN_TLS_PRV"): K,  # Gateway-Betriebsschlüsselpaare
    key_pair_label("GW_WAN_SIG_PRV"): K,
    key_pair_label("GW_WAN_ENC_PRV"): K,
}


def listing(module: SecurityModule) -> dict[str, ObjectKind]:
    return {info.label: info.kind for info in module.objects()}


def pre_personalisation_and_integration(module: SecurityModule, admin: Administrator) -> None:
    """§2.3.1 at the integrator, in the order VP1 → integration → VP2."""
    # production (initialisation) brings the import key
    module.generate_import_key("GW_IMPORT_1")
    # VP1: trust anchor, on-board PRE keys, export, Gütesiegel certificates
    root = make_root("SM-Test-Root")
    module.import_certificate("ROOT_WAN_SIG_CRT", root[0])
    for use in ("TLS", "SIG", "ENC"):
        handle = module.generate_key_pair(key_pair_label(f"GW_WAN_{use}_PRV_PRE"))
        exported = module.public_key(f"GW_WAN_{use}_PRE")
        assert exported == handle.public_key()
        module.import_certificate(f"GW_WAN_{use}_CRT_PRE",
                                  make_certificate(f"GW-{use}-PRE", exported, root))
    # integration: storage key, pairing with the gateway's system PIN
    module.generate_secret(STORAGE_KEY_LABEL)
    module.set_system_pin(SYSTEM_PIN)
    # VP2: the administrator's public keys from the initial configuration file
    module.import_public_key("GWADM_AUT_PUB", admin.aut.public_key())
    for use in ("TLS", "SIG", "ENC"):
        module.import_public_key(f"GWADM_{use}_PUB", SoftwareKey.generate().public_key())
    assert module.has("GW_IMPORT_1")
    # end of §2.3.1: every import key is deleted
    assert module.delete_import_keys() == ["GW_IMPORT_1"]


def test_commissioning_2_3_1_leaves_the_seed_s_key_material(opener: ModuleOpener,
                                                            admin: Administrator) -> None:
    module = opener.open()
    pre_personalisation_and_integration(module, admin)
    assert listing(module) == SUMMARY_2_3_1
    assert module.phase is Phase.OPERATION


def test_commissioning_2_3_3_personalisation_adds_the_operational_keys(
        opener: ModuleOpener, admin: Administrator) -> None:
    module = opener.open()
    pre_personalisation_and_integration(module, admin)
    # installation (§2.3.2); the gateway restarts and unlocks the module with its PIN
    module = opener.reopen(module)
    module.check_system_pin(SYSTEM_PIN)
    # §2.3.3: TLS with the PRE key, the administrator authenticates with GWADM_AUT
    tls_pre = module.key("GW_WAN_TLS_PRE")
    ecdsa_verify(tls_pre.public_key(), tls_pre.sign(b"TLS handshake"), b"TLS handshake")
    admin.login(module)
    exported = {}
    for use in ("TLS", "SIG", "ENC"):
        module.generate_key_pair(key_pair_label(f"GW_WAN_{use}_PRV"))
        exported[use] = module.public_key(f"GW_WAN_{use}")  # for the certificate requests
    module.admin_logout()
    assert listing(module) == SUMMARY_2_3_3
    # the operational certificates are stored in the gateway, not in the module (§2.3.3)
    ecdsa_verify(exported["SIG"], module.key("GW_WAN_SIG").sign(b"reading"), b"reading")


def test_keys_may_be_imported_wrapped_during_integration(opener: ModuleOpener) -> None:
    """Variant of VP1: a PRE key made outside comes in wrapped for the import key."""
    module = opener.open()
    import_public = module.generate_import_key("GW_IMPORT_1")
    outside = ec.generate_private_key(ec.BrainpoolP256R1())
    module.import_wrapped_key("GW_WAN_SIG_PRE",
                              wrap_key_for_import(outside, import_public), "GW_IMPORT_1")
    module.delete_import_keys()
    assert listing(module) == {"GW_WAN_SIG_PRE": K}
