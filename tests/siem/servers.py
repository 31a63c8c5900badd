"""A throwaway rsyslogd receiving syslog over TCP (or TLS, with rsyslog-gnutls) on a free port,
writing each message's raw text, one a line, to a file: the SIEM side of the streams.

rsyslogd missing → the test skips with the reason; BREAKGLASS_REQUIRE_RSYSLOG=1 (CI) makes
that a failure. TLS needs rsyslog's gtls driver (Debian package rsyslog-gnutls)."""

import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from tests.ports import free_port
from tests.scaleout.servers import _missing, _stop, _wait

GTLS_DRIVER = Path("/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so")
PROBE = "<14>1 - - fixture - - - listening-probe"


class Rsyslog:
    """rsyslogd on 127.0.0.1:`port`; stop() and start() again keep the port and the file."""

    def __init__(self, binary: str, folder: Path, tls: "Certificates | None"):
        self.binary, self.folder, self.tls = binary, folder, tls
        self.port = free_port()
        self.received = folder / "received.log"
        self.config = folder / "rsyslog.conf"
        self.config.write_text(self._config())
        self.process: subprocess.Popen | None = None

    def _config(self) -> str:
        driver = ""
        if self.tls:
            driver = (f'global(defaultNetstreamDriver="gtls" '
                      f'defaultNetstreamDriverCAFile="{self.tls.ca}" '
                      f'defaultNetstreamDriverCertFile="{self.tls.cert}" '
                      f'defaultNetstreamDriverKeyFile="{self.tls.key}")\n')
        module = ('module(load="imtcp" streamDriver.name="gtls" streamDriver.mode="1" '
                  'streamDriver.authMode="anon")\n' if self.tls else 'module(load="imtcp")\n')
        # Events are up to tens of kilobytes (SIEM_MAX_MESSAGE_BYTES); rsyslog's default
        # maximum is 8k. Control characters arrive already escaped inside the JSON.
        return (f'global(workDirectory="{self.folder}" maxMessageSize="64k")\n' + driver +
                module +
                f'input(type="imtcp" address="127.0.0.1" port="{self.port}")\n'
                'template(name="raw" type="string" string="%rawmsg%\\n")\n'
                f'*.* action(type="omfile" file="{self.received}" template="raw")\n')

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-n", "-f", str(self.config), "-i", str(self.folder / "pid")],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait(self._probe, self.process, "rsyslogd")

    def stop(self) -> None:
        if self.process is not None:
            _stop(self.process)
            self.process = None

    def _probe(self) -> bool:
        """Sends a probe message until one is written: the input and the output both work."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw:
                if self.tls:
                    context = ssl.create_default_context(cafile=str(self.tls.ca))
                    with context.wrap_socket(raw, server_hostname="localhost") as wrapped:
                        wrapped.sendall(f"{len(PROBE)} {PROBE}".encode())
                else:
                    raw.sendall(f"{len(PROBE)} {PROBE}".encode())
        except OSError:
            return False
        time.sleep(0.1)
        return self.received.exists() and b"listening-probe" in self.received.read_bytes()

    def lines(self, settle_seconds: float = 0.3, timeout: float = 20) -> list[str]:
        """The file's lines, once it has stopped growing (rsyslog writes asynchronously)."""
        deadline, size = time.monotonic() + timeout, -1
        while time.monotonic() < deadline:
            time.sleep(settle_seconds)
            now = self.received.stat().st_size if self.received.exists() else 0
            if now == size:
                break
            size = now
        return self.received.read_text(encoding="utf-8").splitlines()


class Certificates:
    """A throwaway CA and a server certificate for localhost and 127.0.0.1."""

    def __init__(self, folder: Path):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        def name(text: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

        now = datetime.datetime.now(datetime.UTC)
        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
            ec.SECP256R1())
        ca = (x509.CertificateBuilder().subject_name(name("Test SIEM CA"))
              .issuer_name(name("Test SIEM CA")).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(
                  digital_signature=False, content_commitment=False, key_encipherment=False,
                  data_encipherment=False, key_agreement=False, key_cert_sign=True,
                  crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))

        cert = (x509.CertificateBuilder().subject_name(name("localhost"))
                .issuer_name(ca.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
                # Python 3.13 verifies strictly (VERIFY_X509_STRICT): key identifiers needed.
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), critical=False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        self.ca, self.cert, self.key = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
        self.ca.write_bytes(ca.public_bytes(pem))
        self.cert.write_bytes(cert.public_bytes(pem))
        self.key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))


@contextmanager
def rsyslog_tcp_server(*, tls: bool = False):
    """rsyslogd with an imtcp input (TLS: the gtls driver and a throwaway CA); yields Rsyslog."""
    binary = shutil.which("rsyslogd", path="/usr/sbin:/usr/bin")
    if binary is None:
        _missing("RSYSLOG", "needs rsyslogd (apt-get install rsyslog; always run in CI)")
    if tls and not GTLS_DRIVER.exists():
        _missing("RSYSLOG", "needs rsyslog's TLS driver (apt-get install rsyslog-gnutls)")
    with tempfile.TemporaryDirectory(prefix="breakglass-siem-rsyslog-") as folder:
        server = Rsyslog(binary, Path(folder), Certificates(Path(folder)) if tls else None)
        server.start()
        try:
            yield server
        finally:
            server.stop()
