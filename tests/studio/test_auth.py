"""Who may use the studio: the Host check (strict, beyond loopback too), the Origin check, the API key (Bearer for
the API, a cookie for the page), and the flags that set them.

Servers here listen on 127.0.0.1 only; a server "beyond loopback" is one whose app is built as `bricklm studio
--host 0.0.0.0` builds it (its hosts and its key), reached through 127.0.0.1.
"""

import httpx
import pytest

from bricklm.cli import main
from bricklm.studio import create_app
from bricklm.studio.auth import ENV, ApiKey, read_key
from bricklm.studio.hosts import LOOPBACK_NAMES, allowed_hosts, host_of, machine_names
from bricklm.studio.server import access, bind
from conftest import serving

KEY = "k3y-for-tests_0123456789abcdef"


@pytest.fixture(scope="module")
def wide(tiny_runs):
    """A server built as for --host 0.0.0.0 --allow-host studio.lan with a key."""
    hosts, key = access("0.0.0.0", KEY, allow_hosts=["studio.lan"])
    with serving(create_app(tiny_runs, allowed_hosts=hosts, api_key=key)) as url:
        yield url


@pytest.fixture(scope="module")
def loopback(tiny_runs):
    """A server built as `bricklm studio` builds it on 127.0.0.1, without a key."""
    with serving(create_app(tiny_runs, allowed_hosts=access("127.0.0.1", None)[0])) as url:
        yield url


def client(url, **headers) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=30, headers=headers)


BEARER = {"authorization": f"Bearer {KEY}"}


# --- beyond loopback: the Host check stays on, and the key is required ------------------------------------


def test_an_evil_host_is_refused_beyond_loopback_even_with_the_key(wide):
    with client(wide, host="evil.example.com", origin="http://evil.example.com", **BEARER) as http:
        assert http.get("/api/info").status_code == 400
        r = http.post("/v1/completions", json={"model": "tiny", "prompt": "The ", "max_tokens": 3})
        assert r.status_code == 400 and "Host" in r.json()["error"]["message"]
    with client(wide, **BEARER) as http:
        assert http.get("/health").json()["tokens"] == 0  # no completion ran


def test_without_the_key_the_api_is_401_in_openais_shape(wide):
    for headers in ({}, {"authorization": "Bearer wrong-key-wrong-key-wrong"}, {"authorization": KEY}):
        with client(wide, **headers) as http:
            for r in (
                http.get("/api/info"),
                http.get("/v1/models"),
                http.post("/v1/completions", json={"model": "tiny", "max_tokens": 2}),
            ):
                assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
                error = r.json()["error"]
                assert set(error) == {"message", "type", "param", "code"} and error["code"] == "invalid_api_key"


def test_the_key_opens_the_api_to_its_own_names(wide):
    for host in ("127.0.0.1", "studio.lan", "STUDIO.LAN.", "localhost"):
        with client(wide, host=host, **BEARER) as http:
            assert http.get("/api/info").status_code == 200, host
    with client(wide, **BEARER) as http:
        r = http.post("/v1/completions", json={"model": "tiny", "prompt": "The ", "max_tokens": 3})
        assert r.status_code == 200 and len(r.json()["choices"][0]["text"]) == 3


def test_the_openai_client_sends_the_key(wide):
    openai = pytest.importorskip("openai")
    good = openai.OpenAI(base_url=wide + "/v1", api_key=KEY, max_retries=0, timeout=30)
    assert "tiny" in {m.id for m in good.models.list()}
    bad = openai.OpenAI(base_url=wide + "/v1", api_key="not-the-key-not-the-key", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_the_page_trades_the_key_for_a_cookie_once(wide):
    with client(wide) as http:
        assert http.get("/").status_code == 401
        r = http.get("/", params={"key": "wrong-key-wrong-key-wrong"})
        assert r.status_code == 401 and "set-cookie" not in r.headers
        r = http.get("/", params={"key": KEY})
        assert r.status_code == 303 and r.headers["location"] == "/"  # the key leaves the address bar
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and KEY not in cookie
        # httpx keeps the cookie, as the browser does: the page, its files, its API calls and its live stream.
        assert "<title>bricklm studio</title>" in http.get("/").text
        assert http.get("/static/app.js").status_code == 200
        assert http.get("/api/runs").status_code == 200
        with http.stream("GET", "/api/live", params={"run": "tiny"}) as live:
            assert live.status_code == 200
            assert next(line for line in live.iter_lines() if line.startswith("data: "))
    with client(wide, cookie=cookie.split(";")[0] + "0") as http:  # a forged cookie
        assert http.get("/api/runs").status_code == 401


def test_a_page_on_another_site_is_refused_even_with_the_key(wide):
    with client(wide, origin="http://evil.example.com", **BEARER) as http:
        r = http.post("/v1/completions", json={"model": "tiny", "prompt": "The ", "max_tokens": 3})
        assert r.status_code == 403 and "Origin" in r.json()["error"]["message"]
    with client(wide, origin="null", **BEARER) as http:
        assert http.get("/api/runs").status_code == 403
    with client(wide, origin=wide, **BEARER) as http:  # the page's own requests
        assert http.get("/api/runs").status_code == 200


def test_a_key_on_loopback_is_honoured(tiny_runs):
    hosts, key = access("127.0.0.1", KEY)
    with serving(create_app(tiny_runs, allowed_hosts=hosts, api_key=key)) as url:
        assert httpx.get(url + "/api/info", timeout=30).status_code == 401
        assert httpx.get(url + "/api/info", timeout=30, headers=BEARER).status_code == 200


# --- the Host header, parsed strictly ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, host",
    [
        ("127.0.0.1:8000", "127.0.0.1"),
        ("localhost", "localhost"),
        ("LocalHost.:80", "localhost"),
        ("[::1]:8000", "::1"),
        ("[0:0:0:0:0:0:0:1]", "::1"),
        ("studio-1.lan", "studio-1.lan"),
        ("[::1]evil.example.com", None),
        ("[::1]:80evil", None),
        ("[::1", None),
        ("::1", None),
        ("127.0.0.1:8000:80", None),
        ("127.0.0.1:", None),
        ("127.0.0.1:abc", None),
        ("127.0.0.1 evil.example.com", None),
        ("127.0.0.1@evil.example.com", None),
        ("evil.example.com/127.0.0.1", None),
        ("-bad.example", None),
        ("a..b", None),
        ("", None),
        ("[fe80::1%eth0]", None),
        ("x" * 64 + ".example", None),
    ],
)
def test_host_headers_are_parsed_strictly(header, host):
    assert host_of(header) == host


@pytest.mark.parametrize("header", ["[::1]evil.example.com", "localhost:80:80", "127.0.0.1 x", "127.0.0.1:", ""])
def test_a_malformed_host_is_a_400_on_loopback(loopback, header):
    with client(loopback, host=header) as http:
        r = http.get("/api/info")
        assert r.status_code == 400 and r.json()["error"]["message"]
    with client(loopback, host="[::1]:1234") as http:
        assert http.get("/api/info").status_code == 200


def test_an_origin_from_another_site_is_refused_on_loopback(loopback):
    # Without a key, a page elsewhere could still make the browser run a completion here (unread, but run).
    with client(loopback, origin="http://evil.example.com") as http:
        r = http.post("/v1/completions", json={"model": "tiny", "prompt": "The ", "max_tokens": 3})
        assert r.status_code == 403
    assert httpx.get(loopback + "/health", timeout=30).json()["tokens"] == 0


def test_allowed_hosts_beyond_loopback_are_this_machines_names_and_the_extra_ones():
    wide = allowed_hosts("0.0.0.0", ["Studio.LAN", "[fe80::2]"], loopback_only=False)
    assert set(LOOPBACK_NAMES) | {"studio.lan", "fe80::2"} | machine_names() <= set(wide)
    assert "0.0.0.0" not in wide and "evil.example.com" not in wide
    assert set(allowed_hosts("127.0.0.1")) == set(LOOPBACK_NAMES)


# --- the key and the flags -----------------------------------------------------------------------------------


def test_keys_are_compared_whole():
    key = ApiKey(KEY)
    assert key.matches(KEY) and not key.matches(KEY[:-1]) and not key.matches(KEY + "x") and not key.matches("")
    assert key.bearer_ok(f"Bearer {KEY}") and key.bearer_ok(f"bearer {KEY}") and not key.bearer_ok(KEY)


def test_where_the_key_comes_from(tmp_path):
    keyfile = tmp_path / "key"
    keyfile.write_text(KEY + "\n")
    assert read_key(None, None, {}) is None
    assert read_key(None, None, {ENV: KEY}) == KEY
    assert read_key(None, str(keyfile), {ENV: "ignored"}) == KEY
    assert read_key(KEY, None, {ENV: "ignored"}) == KEY


def refused(capsys, argv, *needles):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("bricklm: error:") and "\n" not in err, err
    for needle in needles:
        assert needle in err, err


def test_flags_that_cannot_work_are_one_line_each(tiny_runs, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    studio = ["studio", "--runs", str(tiny_runs), "--port", "0"]
    refused(capsys, [*studio, "--host", "0.0.0.0"], "API key", "--no-auth")
    refused(capsys, [*studio, "--api-key", "short"], "at least 16")
    refused(capsys, [*studio, "--api-key", KEY + " x"], "characters")
    refused(capsys, [*studio, "--api-key", KEY, "--api-key-file", str(tmp_path / "k")], "not both")
    refused(capsys, [*studio, "--api-key-file", str(tmp_path / "missing")], "not found")
    refused(capsys, [*studio, "--api-key", KEY, "--no-auth"], "contradict")
    refused(capsys, [*studio, "--allow-host", "evil host!"], "--allow-host")
    refused(capsys, [*studio, "--max-live", "0"], "--max-live")
    monkeypatch.setenv(ENV, "short")
    refused(capsys, studio, f"${ENV}", "at least 16")


def test_a_key_lets_the_server_listen_beyond_loopback(tiny_runs, capsys, monkeypatch):
    # The port is taken, so the command stops at binding, after it accepted the key: nothing listens.
    monkeypatch.setenv(ENV, KEY)
    busy = bind("127.0.0.1", 0)
    busy.listen()
    try:
        port = str(busy.getsockname()[1])
        assert main(["serve", "--run", str(tiny_runs / "tiny"), "--host", "0.0.0.0", "--port", port]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"bricklm: error: port {port} on 0.0.0.0 is in use"), err
    finally:
        busy.close()


@pytest.mark.parametrize("command", ["studio", "serve"])
def test_help_offers_the_key_and_warns_where_it_shows(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--api-key KEY", "--api-key-file FILE", "--no-auth", "--allow-host NAME", "--max-live N", ENV):
        assert flag in out
    assert "`ps`" in out
