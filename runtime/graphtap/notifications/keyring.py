"""The key ring: which private key decrypts a notification.

Graph names the certificate it encrypted for with `encryptionCertificateId` (the label the
subscription set) and `encryptionCertificateThumbprint` (SHA-1 of the certificate's DER,
upper-case hex). During a rotation Graph keeps using the old certificate for a while, so the
ring holds several keys at once. Certificate validity dates are deliberately ignored: Graph
does not check them, and an expired certificate's notifications must still decrypt.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from graphtap.notifications.errors import NotificationError, Reason
from graphtap.notifications.model import EncryptedContent

KEY_SUFFIX = ".key.pem"
CERT_SUFFIXES = (".cert.pem", ".crt", ".cer")
PKCS12_SUFFIXES = (".pfx", ".p12")


class KeyRingError(ValueError):
    """A key file or folder that cannot be loaded; the message names the file."""


def thumbprint(certificate: x509.Certificate) -> str:
    """Graph's `encryptionCertificateThumbprint`: SHA-1 of the DER bytes, upper-case hex."""
    return certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 (Graph's format)


@dataclass(frozen=True, slots=True)
class KeyEntry:
    certificate_id: str
    private_key: rsa.RSAPrivateKey
    certificate: x509.Certificate | None
    source: str

    @property
    def thumbprint(self) -> str | None:
        return thumbprint(self.certificate) if self.certificate is not None else None


@dataclass
class KeyRing:
    """Private keys by certificate id and by thumbprint, with the time each was last used.

    Every interval (between looks at the key files, the retirement grace) is measured on
    `clock`, which never jumps: a wall clock stepped back an hour would otherwise hold a
    rotated key back for that hour. The wall clock only dates `last_used`.
    """

    _by_id: dict[str, KeyEntry] = field(default_factory=dict)
    _by_thumbprint: dict[str, KeyEntry] = field(default_factory=dict)
    _last_used: dict[str, float] = field(default_factory=dict)  # wall clock, for reports
    _used_at: dict[str, float] = field(default_factory=dict)  # on `clock`, for the grace
    #: Seconds between looks at the key files (`refresh`), so the hot path does no I/O.
    refresh_interval: float = 5.0
    #: Seconds a key that left its source stays usable after it last decrypted anything.
    retire_grace: float = 3600.0
    _sources: dict[Path, bytes | None] = field(default_factory=dict)
    _signature: tuple[tuple[str, int, int], ...] = ()
    _next_refresh: float | None = None
    _left_source: dict[str, float] = field(default_factory=dict)
    #: Seconds that only ever increase (`time.monotonic`); tests give their own.
    clock: Callable[[], float] = time.monotonic
    #: Seconds since the epoch, for `last_used`.
    wall_clock: Callable[[], float] = time.time

    def add(
        self,
        private_key: rsa.RSAPrivateKey,
        *,
        certificate_id: str,
        certificate: x509.Certificate | None = None,
        source: str = "",
    ) -> KeyEntry:
        if certificate is not None and not _same_key(private_key, certificate):
            raise KeyRingError(
                f"{source or certificate_id}: the certificate does not belong to the private key"
            )
        entry = KeyEntry(certificate_id, private_key, certificate, source)
        self._by_id[certificate_id] = entry
        if entry.thumbprint is not None:
            self._by_thumbprint[entry.thumbprint] = entry
        return entry

    def remove(self, certificate_id: str) -> None:
        """Forget the id's key, and any key it replaced (still held by thumbprint)."""
        self._by_id.pop(certificate_id)
        for known, entry in list(self._by_thumbprint.items()):
            if entry.certificate_id == certificate_id:
                del self._by_thumbprint[known]
        self._last_used.pop(certificate_id, None)
        self._used_at.pop(certificate_id, None)

    def entries(self) -> list[KeyEntry]:
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def last_used(self, certificate_id: str) -> float | None:
        """Unix time this key last decrypted a notification in this process, if ever."""
        return self._last_used.get(certificate_id)

    def key_for(self, content: EncryptedContent) -> KeyEntry:
        """The entry whose certificate has the notification's thumbprint, else the one named
        by `encryptionCertificateId`. The thumbprint names one certificate exactly: a key
        replaced under the same id stays reachable by it while Graph still encrypts to it."""
        entry = None
        if content.certificate_thumbprint is not None:
            entry = self._by_thumbprint.get(content.certificate_thumbprint.upper())
        if entry is None and content.certificate_id is not None:
            entry = self._by_id.get(content.certificate_id)
        if entry is None:
            raise NotificationError(
                Reason.UNKNOWN_CERTIFICATE,
                f"no key for encryptionCertificateId {content.certificate_id!r} "
                f"(thumbprint {content.certificate_thumbprint!r}); "
                f"the key ring holds {sorted(self._by_id) or 'no keys'}",
            )
        self._last_used[entry.certificate_id] = self.wall_clock()
        self._used_at[entry.certificate_id] = self.clock()
        return entry

    @classmethod
    def load(cls, paths: Iterable[Path], *, password: bytes | None = None) -> KeyRing:
        """Load key files and folders of them (see `load_into`)."""
        ring = cls()
        for path in paths:
            ring.load_into(path, password=password)
        return ring

    def load_into(self, path: Path, *, password: bytes | None = None) -> list[KeyEntry]:
        """Add a key file, or every key in a folder.

        A PEM key's certificate id is its name (`ID.key.pem`) or that of a certificate beside
        it whose public key matches (`ID.cert.pem`); a PKCS#12 bundle's id is its file stem.
        """
        if not path.exists():
            raise KeyRingError(f"{path}: no such key file or folder")
        if path not in self._sources:
            self._sources[path] = password
            self._signature = self._source_signature()
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            certificates = [c for c in (_try_certificate(p) for p in files) if c is not None]
            keys = [p for p in files if _looks_like_key(p)]
            if not keys:
                raise KeyRingError(f"{path}: no private key files (*{KEY_SUFFIX}, *.pfx, *.p12)")
            return [self._load_file(p, password, certificates) for p in keys]
        siblings = sorted(p for p in path.parent.iterdir() if p.is_file() and p != path)
        certificates = [c for c in (_try_certificate(p) for p in siblings) if c is not None]
        return [self._load_file(path, password, certificates)]

    def refresh(self, now: float | None = None) -> bool:
        """Pick up keys added to the key files since, and retire keys that left them.

        A rotation adds the new certificate's key while Graph may still encrypt to the old
        one, so a key that left its source is dropped only once it has not decrypted
        anything for `retire_grace` seconds. Looks at the files at most every
        `refresh_interval` seconds; returns whether the ring changed. `now`: a reading of
        `clock` (read here when not given).
        """
        now = self.clock() if now is None else now
        if (self._next_refresh is not None and now < self._next_refresh) or not self._sources:
            return False
        self._next_refresh = now + self.refresh_interval
        changed = False
        signature = self._source_signature()
        if signature != self._signature:
            fresh = KeyRing()
            for path, password in self._sources.items():
                if path.exists():
                    fresh.load_into(path, password=password)
            self._signature = signature  # only once loaded: a failed read is tried again
            for entry in fresh.entries():
                current = self._by_id.get(entry.certificate_id)
                # Public keys too: a key file without a certificate has no thumbprint.
                if (
                    current is None
                    or current.thumbprint != entry.thumbprint
                    or not _same_public_key(current, entry)
                ):
                    self.add(
                        entry.private_key,
                        certificate_id=entry.certificate_id,
                        certificate=entry.certificate,
                        source=entry.source,
                    )
                    changed = True
                self._left_source.pop(entry.certificate_id, None)
            for certificate_id in set(self._by_id) - {e.certificate_id for e in fresh.entries()}:
                self._left_source.setdefault(certificate_id, now)
        for certificate_id, left in list(self._left_source.items()):
            last = max(left, self._used_at.get(certificate_id, left))
            if now - last >= self.retire_grace and certificate_id in self._by_id:
                self.remove(certificate_id)
                del self._left_source[certificate_id]
                changed = True
        return changed

    def _source_signature(self) -> tuple[tuple[str, int, int], ...]:
        found: list[tuple[str, int, int]] = []
        for path in self._sources:
            files = sorted(path.iterdir()) if path.is_dir() else [path]
            for file in files:
                try:
                    stat = file.stat()
                except FileNotFoundError:
                    continue
                found.append((str(file), stat.st_mtime_ns, stat.st_size))
        return tuple(found)

    def _load_file(
        self,
        path: Path,
        password: bytes | None,
        certificates: list[tuple[Path, x509.Certificate]],
    ) -> KeyEntry:
        data = path.read_bytes()
        if path.name.lower().endswith(PKCS12_SUFFIXES):
            key, certificate = _load_pkcs12(path, data, password)
            return self.add(
                key, certificate_id=path.stem, certificate=certificate, source=str(path)
            )
        key = _load_pem_key(path, data, password)
        own = _pem_certificate(data)
        matching = [(p, c) for p, c in certificates if _same_key(key, c)]
        certificate = own or (matching[0][1] if matching else None)
        if path.name.endswith(KEY_SUFFIX):
            certificate_id = path.name[: -len(KEY_SUFFIX)]
        elif matching:
            certificate_id = _certificate_stem(matching[0][0])
        else:
            raise KeyRingError(
                f"{path}: cannot tell which certificate id this key serves; name it "
                f"ID{KEY_SUFFIX} or put the certificate ID.cert.pem beside it"
            )
        return self.add(
            key, certificate_id=certificate_id, certificate=certificate, source=str(path)
        )


def _looks_like_key(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(KEY_SUFFIX) or name.endswith(PKCS12_SUFFIXES):
        return True
    return name.endswith(".pem") and b"PRIVATE KEY-----" in path.read_bytes()


def _load_pem_key(path: Path, data: bytes, password: bytes | None) -> rsa.RSAPrivateKey:
    # One password serves a folder's encrypted keys; unencrypted keys beside them load as they are.
    encrypted = b"ENCRYPTED" in data
    try:
        key = serialization.load_pem_private_key(data, password=password if encrypted else None)
    except TypeError as exc:
        raise KeyRingError(f"{path}: {exc} (pass --key-password)") from None
    except ValueError as exc:
        raise KeyRingError(f"{path}: not a PEM private key (PKCS#8 or PKCS#1): {exc}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyRingError(f"{path}: Graph encrypts with RSA; this key is {type(key).__name__}")
    return key


def _load_pkcs12(
    path: Path, data: bytes, password: bytes | None
) -> tuple[rsa.RSAPrivateKey, x509.Certificate | None]:
    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(data, password)
    except ValueError as exc:
        raise KeyRingError(
            f"{path}: cannot open the PKCS#12 bundle (wrong password?): {exc}"
        ) from None
    if key is None:
        raise KeyRingError(f"{path}: the PKCS#12 bundle holds no private key")
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyRingError(f"{path}: Graph encrypts with RSA; this key is {type(key).__name__}")
    return key, certificate


def _pem_certificate(data: bytes) -> x509.Certificate | None:
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return None
    return x509.load_pem_x509_certificate(data)


def _try_certificate(path: Path) -> tuple[Path, x509.Certificate] | None:
    name = path.name.lower()
    if not (name.endswith(CERT_SUFFIXES) or name.endswith(".pem")):
        return None
    data = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return path, x509.load_pem_x509_certificate(data)
        if name.endswith((".cer", ".crt")):
            return path, x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise KeyRingError(f"{path}: not a readable X.509 certificate: {exc}") from None
    return None


def _certificate_stem(path: Path) -> str:
    name = path.name
    for suffix in (*CERT_SUFFIXES, ".pem"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _same_key(private_key: rsa.RSAPrivateKey, certificate: x509.Certificate) -> bool:
    public = certificate.public_key()
    return (
        isinstance(public, rsa.RSAPublicKey)
        and public.public_numbers() == private_key.public_key().public_numbers()
    )


def _same_public_key(one: KeyEntry, other: KeyEntry) -> bool:
    return one.private_key.public_key().public_numbers() == (
        other.private_key.public_key().public_numbers()
    )
