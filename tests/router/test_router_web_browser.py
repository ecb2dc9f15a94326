"""The admin page in a real browser (Debian's chromium through chromedriver and Selenium) against
``natpass run`` in the lab, as a LAN host sees it: log in, a wrong password refused, PPTP
passthrough turned on (confirmed), a real PPTP call from the lab client in Live tunnels, PPTP turned
off and the call torn down; a port forward added on the page and reached from the internet side,
a backup downloaded, restored, and an edited one refused with the reason; a capture uploaded and
its finding read. Screenshots at desktop and 390-px phone width go to out/screenshots/ (not
committed). Root and namespaces: CI runs it.
"""

from __future__ import annotations

import base64
import ctypes
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import need_root

from natpass.lab import topology as T
from natpass.lab.netns import Netns
from natpass.lab.peers.pptp import Pptp

DATA = Path(__file__).resolve().parents[1] / "data" / "diagnose"
PPTP_OFF = DATA / "pptp-basic-natpass-switch-off-client.pcap"
FORWARD_PORT = 8022  # on the router's WAN address
SERVICE_PORT = 8000  # the TCP listener on the LAN client
GREETING = "natpass forward reached the LAN server"
# A TCP server on the LAN client: answers each connection with GREETING, bounded to 60 s and 10 connections.
LISTENER = f"""
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {SERVICE_PORT})); s.listen(4); s.settimeout(2.0)
end = time.monotonic() + 60; served = 0
while time.monotonic() < end and served < 10:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.sendall(b"{GREETING}\\n"); c.close(); served += 1
"""
# From the internet side: connect to the router's WAN port, print what the server says (or why not).
CONNECT = """
import socket, sys
try:
    with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3) as c:
        c.settimeout(3); print(c.recv(200).decode().strip())
except OSError as exc:
    print("no connection:", type(exc).__name__)
"""

PREFIX = "webui"
PASSWORD = "lab admin password"
PORT = 8080
SHOTS = Path(__file__).resolve().parents[2] / "out" / "screenshots"
CLONE_NEWNET = 0x40000000
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
DESKTOP = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}

pytestmark = [pytest.mark.root, pytest.mark.slow]


def _setns(path: str) -> None:
    """Move this thread into the network namespace at ``path`` (what `ip netns exec` does)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


class Browser:
    """chromium driven from inside the lab client's namespace (so it is a LAN host)."""

    def __init__(self, lab: Netns, node: str, host: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="natpass-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--no-first-run", "--disable-extensions", "--disable-background-networking",
                    f"--user-data-dir={self.profile}", "--window-size=1280,900", "--disable-component-update",
                    "--disable-sync", "--no-pings", "--dns-prefetch-disable", "--disable-domain-reliability",
                    "--disable-features=MediaRouter,OptimizationHints,DnsOverHttps,Translate",
                    f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {host}"):  # no DNS: the page is an address
            options.add_argument(arg)
        os.environ["SE_OFFLINE"] = "true"  # never let Selenium fetch a browser or driver
        self.own_ns = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        _setns(f"/run/netns/{lab.ns(node)}")
        try:
            service = Service(executable_path=shutil.which("chromedriver") or "/usr/bin/chromedriver")
            self.driver = webdriver.Chrome(service=service, options=options)
        except BaseException:
            self._back()
            raise
        self.driver.set_page_load_timeout(20)

    def _back(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.setns(self.own_ns, CLONE_NEWNET)
        os.close(self.own_ns)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            self._back()
            shutil.rmtree(self.profile, ignore_errors=True)

    def downloads_to(self, folder: str) -> None:
        self.driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": folder})

    def size(self, metrics: dict[str, Any]) -> None:
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)

    def shot(self, name: str, metrics: dict[str, Any]) -> Path:
        """A full-page PNG at the given width (the page is laid out again at that width)."""
        self.size(metrics)
        time.sleep(0.2)
        layout = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        content = layout.get("cssContentSize") or layout["contentSize"]
        data = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": metrics["width"], "height": max(metrics["height"], content["height"]),
                     "scale": 1}})
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}-{metrics['width']}.png"
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    def overflow(self) -> int:
        """How many CSS pixels the page is wider than the viewport (0: nothing cut or sideways)."""
        return int(self.driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"))


@pytest.fixture(scope="module")
def lab() -> Iterator[tuple[Netns, T.Topology, str]]:
    need_root()
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            pytest.fail(f"{program} is not installed (scripts/install-deps.sh installs chromium and chromium-driver)")
    netns = Netns(PREFIX)
    with netns.session():
        topo = T.build(netns, "basic", router="natpass", clients=1, start_routers=False)
        r = topo.home
        assert r.config
        with open(r.config, "a", encoding="utf-8") as fh:
            fh.write(f'admin_http = "{r.lan_addr}:{PORT}"\n')  # [router] is the file's last table
        proc = netns.run("r1", T.natpass_argv("passwd", "--config", r.config, "--stdin"), input=PASSWORD + "\n")
        assert "password set" in proc.stdout
        T.start_natpass(netns, r)  # raises LabError with the router's log when it does not come up
        assert r.pid and netns.alive(r.pid), r.error
        yield netns, topo, f"http://{r.lan_addr}:{PORT}"


def _wait(predicate: Any, timeout: float, interval: float = 0.5) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def test_a_lan_host_logs_in_turns_pptp_on_sees_the_call_and_turns_it_off(root, lab):
    from selenium.webdriver.common.by import By

    netns, topo, base = lab
    client_addr = topo.client_addrs["c1"]
    browser = Browser(netns, "c1", topo.home.lan_addr)
    pptp = Pptp(netns, topo, client="c1", timeout=15)
    d = browser.driver
    try:
        assert _wait(lambda: _reachable(d, base), 15), "the admin page did not come up on the LAN address"
        d.get(base + "/passthrough")
        assert "/login" in d.current_url  # nothing readable without logging in
        browser.shot("login", DESKTOP)

        def log_in(password: str) -> None:
            box = d.find_element(By.ID, "password")
            box.clear()
            box.send_keys(password)
            d.find_element(By.CSS_SELECTOR, "form.login button").click()

        log_in("not the password")
        assert "wrong password" in wait_for(d, "[role=alert]").text
        browser.shot("login-refused", PHONE)
        browser.size(DESKTOP)
        log_in(PASSWORD)
        # the click returns when the form is sent; the password check (argon2) and the redirect follow
        assert wait_for_url(d, "/passthrough"), f"{d.current_url}: {d.find_element(By.TAG_NAME, 'body').text[:600]}"
        assert "OFF" in d.find_element(By.CSS_SELECTOR, "#switch-pptp .badge").text

        d.find_element(By.ID, "toggle-pptp").click()  # asks first, naming the exposure
        confirm = wait_for(d, "#confirm")
        assert "MS-CHAPv2" in d.page_source and "GRE" in d.page_source
        browser.shot("confirm-pptp", PHONE)
        browser.size(DESKTOP)
        confirm.click()
        assert "PPTP passthrough is now on" in flash_text(d)
        assert "ON" in d.find_element(By.CSS_SELECTOR, "#switch-pptp .badge").text

        t0 = pptp.start()
        result = pptp.wait(t0)
        assert result.connected, result.detail

        def tunnel_listed() -> bool:
            d.get(base + "/passthrough")
            card = d.find_element(By.ID, "switch-pptp").text
            return client_addr in card and pptp.server_addr in card

        assert _wait(tunnel_listed, 10), d.find_element(By.ID, "switch-pptp").text
        browser.shot("passthrough", DESKTOP)
        browser.shot("passthrough", PHONE)
        assert browser.overflow() == 0, "the page is wider than a 390-px phone"
        browser.size(DESKTOP)

        d.find_element(By.ID, "toggle-pptp").click()  # turning off needs no confirmation
        flash = flash_text(d)
        assert "PPTP passthrough is now off" in flash and "tunnel(s) were closed" in flash
        card = d.find_element(By.ID, "switch-pptp").text
        assert "No live tunnels" in card and client_addr not in card
        st = T.natpass_status(netns, topo.home)
        assert st is not None and st["switches"]["pptp"] is False
        assert not [t for t in st["helpers"]["pptp"]["tunnels"] if t.get("proto") == "pptp"]

        d.get(base + "/log")
        log_text = d.find_element(By.TAG_NAME, "main").text
        assert "Login refused" in log_text and "PPTP passthrough on" in log_text and "PPTP passthrough off" in log_text
        browser.shot("log", DESKTOP)
        for page in ("", "connections"):
            d.get(f"{base}/{page}")
            browser.shot(page or "status", DESKTOP)
            browser.shot(page or "status", PHONE)
            assert browser.overflow() == 0, f"/{page} is wider than a 390-px phone"
    finally:
        pptp.stop()
        browser.close()


def test_a_lan_host_forwards_a_port_backs_up_restores_and_diagnoses(root, lab, tmp_path):
    from selenium.webdriver.common.by import By

    netns, topo, base = lab
    client_addr, wan = topo.client_addrs["c1"], topo.home.wan_addr
    listener = netns.spawn("c1", ["python3", "-c", LISTENER], label="web-forward-listener")
    browser = Browser(netns, "c1", topo.home.lan_addr)
    d = browser.driver
    downloads = tempfile.mkdtemp(prefix="natpass-downloads-")
    browser.downloads_to(downloads)

    def from_internet() -> str:
        return netns.run("srv", ["python3", "-c", CONNECT, wan, str(FORWARD_PORT)], timeout=15).stdout.strip()

    def forward_listed() -> bool:
        rows = d.find_elements(By.CSS_SELECTOR, "table tbody tr")
        return any(f"{client_addr}:{SERVICE_PORT}" in r.text and str(FORWARD_PORT) in r.text for r in rows)

    try:
        assert _wait(lambda: _reachable(d, base), 15), "the admin page did not come up on the LAN address"
        d.get(base + "/forwards")
        assert "/login" in d.current_url  # nothing readable without logging in
        d.find_element(By.ID, "password").send_keys(PASSWORD)
        d.find_element(By.CSS_SELECTOR, "form.login button").click()
        assert wait_for_url(d, "/forwards"), d.current_url
        assert from_internet().startswith("no connection")  # nothing forwarded yet

        # ----- a port forward added on the page, reached from the internet side
        def add_forward(to: str) -> None:
            d.find_element(By.ID, "fw-port").clear()
            d.find_element(By.ID, "fw-port").send_keys(str(FORWARD_PORT))
            d.find_element(By.ID, "fw-to").clear()
            d.find_element(By.ID, "fw-to").send_keys(to)
            d.find_element(By.ID, "add").click()

        add_forward("10.20.30.40:80")  # outside the LAN: refused with the reason, the form kept
        assert "is not in the LAN" in wait_for(d, "[role=alert]").text
        assert d.find_element(By.ID, "fw-to").get_attribute("value") == "10.20.30.40:80"
        browser.shot("forwards-refused", PHONE)
        browser.size(DESKTOP)
        add_forward(f"{client_addr}:{SERVICE_PORT}")
        assert "saved in the config file" in flash_text(d)
        assert forward_listed()
        assert from_internet() == GREETING
        browser.shot("forwards", DESKTOP)
        browser.shot("forwards", PHONE)
        assert browser.overflow() == 0, "/forwards is wider than a 390-px phone"
        browser.size(DESKTOP)

        # ----- a backup downloaded (with the forward), the forward removed, the backup restored
        d.get(base + "/backup")
        d.find_element(By.ID, "download").click()
        assert _wait(lambda: [f for f in os.listdir(downloads) if f.endswith(".toml")], 15), os.listdir(downloads)
        backup = Path(downloads) / next(f for f in os.listdir(downloads) if f.endswith(".toml"))
        assert backup.read_text().startswith("# natpass-backup:") and str(FORWARD_PORT) in backup.read_text()
        d.get(base + "/forwards")
        d.find_element(By.ID, f"remove-tcp-{FORWARD_PORT}").click()
        assert "removed" in flash_text(d) and not forward_listed()
        assert from_internet().startswith("no connection")

        d.get(base + "/backup")
        d.find_element(By.ID, "backup-file").send_keys(str(backup))
        d.find_element(By.ID, "restore").click()
        assert f"forward +tcp/{FORWARD_PORT}->{client_addr}:{SERVICE_PORT}" in flash_text(d)
        assert from_internet() == GREETING  # the restored config runs
        edited = tmp_path / "edited-backup.toml"
        edited.write_text(backup.read_text().replace(f"port = {FORWARD_PORT}", f"port = {FORWARD_PORT + 1}"))
        d.find_element(By.ID, "backup-file").send_keys(str(edited))
        d.find_element(By.ID, "restore").click()
        refusal = wait_for(d, "[role=alert]").text
        assert "SHA-256" in refusal and "edited-backup.toml" in refusal
        browser.shot("backup-refused", DESKTOP)
        browser.shot("backup-refused", PHONE)
        assert browser.overflow() == 0, "/backup is wider than a 390-px phone"
        browser.size(DESKTOP)
        assert from_internet() == GREETING  # the refused file changed nothing

        # ----- a capture uploaded and its finding read
        d.get(base + "/diagnose")
        d.find_element(By.ID, "capture-file").send_keys(str(PPTP_OFF))
        d.find_element(By.ID, "diagnose").click()
        finding = wait_for(d, "#finding-gre-blocked", timeout=60).text
        assert "GRE" in finding and "PPTP" in finding
        browser.shot("diagnose", DESKTOP)
        browser.shot("diagnose", PHONE)
        assert browser.overflow() == 0, "/diagnose is wider than a 390-px phone"
        browser.size(DESKTOP)

        # ----- a live capture on the router while a PPTP client tries (the switch is off again)
        d.get(base + "/diagnose")
        seconds = d.find_element(By.ID, "seconds")
        seconds.clear()
        seconds.send_keys("8")
        pptp = Pptp(netns, topo, client="c1", timeout=15)
        try:
            pptp.start()
            d.find_element(By.ID, "capture-live").click()
            live = wait_for(d, "#live-report", timeout=60).text
        finally:
            pptp.stop()
        assert topo.home.lan_if in live and topo.home.wan_if in live
        assert "passthrough-disabled:pptp" in live, live  # the router's own drops in that window
        assert "LAN side" in d.page_source and "WAN side" in d.page_source
        browser.shot("diagnose-live", DESKTOP)
        browser.shot("diagnose-live", PHONE)
        assert browser.overflow() == 0, "/diagnose/live is wider than a 390-px phone"
        browser.size(DESKTOP)

        d.get(base + "/forwards")
        d.find_element(By.ID, f"remove-tcp-{FORWARD_PORT}").click()
        assert "removed" in flash_text(d)
        d.get(base + "/log")
        log_text = d.find_element(By.TAG_NAME, "main").text
        assert f"port forward tcp *:{FORWARD_PORT}" in log_text and "restore of" in log_text
    finally:
        browser.close()
        netns.kill(listener)
        shutil.rmtree(downloads, ignore_errors=True)


def wait_for(driver: Any, css: str, timeout: float = 20) -> Any:
    """The first element matching ``css``, once the page shows it (fails the test with the page)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout).until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, css)))
    except TimeoutException:
        pytest.fail(f"{css} never appeared: {driver.current_url}: "
                    f"{driver.find_element(By.TAG_NAME, 'body').text[:600]}")


def wait_for_url(driver: Any, ending: str, timeout: float = 20) -> bool:
    """True once the browser has navigated to a URL ending in ``ending``."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, timeout).until(lambda drv: drv.current_url.split("?")[0].endswith(ending))
    except TimeoutException:
        return False
    return True


def flash_text(driver: Any) -> str:
    """The message a change leaves on the page it redirects to (waiting for that page)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, 20).until(expected_conditions.presence_of_element_located(
            (By.CSS_SELECTOR, "[role=status]")))
    except TimeoutException:
        pytest.fail(f"no message after the change: {driver.current_url}: "
                    f"{driver.find_element(By.TAG_NAME, 'body').text[:600]}")
    return str(driver.find_element(By.CSS_SELECTOR, "[role=status]").text)


def _reachable(driver: Any, base: str) -> bool:
    from selenium.common.exceptions import WebDriverException

    try:
        driver.get(base + "/login")
    except WebDriverException:
        return False
    return "Log in" in driver.title
