"""The browser's session token (issue 15): nothing secret reaches a page, the server accepts only tokens it signed,
and a session survives a reload. Real app over real HTTP, real Chromium (Playwright); the stored values are
encrypted and decrypted here with openssl exactly as gr.BrowserState's CryptoJS does (AES-256-CBC, key and IV from
the passphrase SHA-256(secret) in hex by OpenSSL's EVP_BytesToKey with MD5)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from core.session_token import SIGNING_KEY_FILE, sign, signing_key, verify
from core.workspace import Sessions, new_key
from tests.conftest import ASSETS, running_app
from ui.session import PUBLIC_PASSPHRASE, STORAGE_KEY

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
OLD_SECRET = "old-browser-secret-Zq7Xw2Lr9Pk4"  # what an earlier version kept in .browser-secret and served


def test_only_tokens_the_server_signed_are_accepted(tmp_path):
    secret = signing_key(tmp_path)
    assert signing_key(tmp_path) == secret and len(secret) >= 32  # stable across restarts
    mode = stat.S_IMODE((tmp_path / SIGNING_KEY_FILE).stat().st_mode)
    assert mode == 0o600
    key, other = new_key(), new_key()
    token = sign(key, secret)
    assert verify(token, secret) == key
    tag = token.rpartition(".")[2]
    flipped = tag[:-1] + ("A" if tag[-1] != "A" else "B")
    for bad in (
        f"{key}.{flipped}",  # tampered tag
        f"{other}.{tag}",  # someone else's key with my tag
        key,  # a bare key, as versions before issue 15 stored it
        sign(key, b"another server's key"),
        "",
        None,
        42,
        "x" * 300,
        f"{key}.{tag}.{tag}",
    ):
        assert verify(bad, secret) is None, bad


def _cryptojs_encrypt(value: object, secret: str) -> str:
    """What gr.BrowserState writes to localStorage for ``value`` with ``secret`` (its frontend's G function)."""
    passphrase = hashlib.sha256(secret.encode()).hexdigest()
    out = subprocess.run(
        [
            "openssl",
            "enc",
            "-aes-256-cbc",
            "-md",
            "md5",
            "-salt",
            "-pass",
            f"pass:{passphrase}",
            "-base64",
            "-A",
        ],
        input=json.dumps(value).encode(),
        capture_output=True,
        check=True,
    )
    # the leading IV is ignored by CryptoJS's passphrase mode (it derives the IV from the salt), as in gradio's own
    return base64.b64encode(os.urandom(16)).decode() + ":" + out.stdout.decode().strip()


def _cryptojs_decrypt(stored: str, secret: str) -> object:
    passphrase = hashlib.sha256(secret.encode()).hexdigest()
    out = subprocess.run(
        [
            "openssl",
            "enc",
            "-d",
            "-aes-256-cbc",
            "-md",
            "md5",
            "-pass",
            f"pass:{passphrase}",
            "-base64",
            "-A",
        ],
        input=stored.split(":", 1)[1].encode(),
        capture_output=True,
        check=True,
    )
    return json.loads(out.stdout)


def _stored_token(page, unlike: object = None) -> str:
    """The token the page keeps once the server's answer to the page load is stored (up to 120 s): the first
    decryptable string other than ``unlike`` (a planted value the frontend may re-store before the answer)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        raw = page.evaluate(f"localStorage.getItem({json.dumps(STORAGE_KEY)})")
        try:
            token = _cryptojs_decrypt(raw, PUBLIC_PASSPHRASE) if raw else None
        except (subprocess.CalledProcessError, IndexError, ValueError):  # still the planted, foreign value
            token = None
        if isinstance(token, str) and token and token != unlike:
            return token
        page.wait_for_timeout(300)
    raise AssertionError("the page never stored a session token")


def _upload(page, sessions_dir: Path) -> set[Path]:
    """Upload the sample in the Data tab; returns every kept upload under the sessions folder afterwards."""
    before = set(sessions_dir.glob("*/uploads/*.jsonl"))
    page.get_by_role("tab", name="2. Data").click()
    page.locator("input[type=file]").first.set_input_files(str(ASSETS / "humaneval_alpaca.jsonl"))
    deadline = time.time() + 60
    while time.time() < deadline and set(sessions_dir.glob("*/uploads/*.jsonl")) == before:
        time.sleep(0.3)
    after = set(sessions_dir.glob("*/uploads/*.jsonl"))
    assert after != before, "the upload was not kept"
    return after - before


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("secret-app")
    sessions_dir = cwd / "sessions"
    sessions_dir.mkdir()
    (sessions_dir / ".browser-secret").write_text(OLD_SECRET)  # left by an earlier version: the upgrade case
    env = {"LORA_STUDIO_SESSIONS_DIR": str(sessions_dir), "LORA_STUDIO_SECRET": "operator-set-Vb82mQ1"}
    with running_app(cwd, "--private-sessions", env=env) as url:
        yield url, sessions_dir


def test_no_secret_is_served_to_pages(app):
    import httpx

    url, sessions_dir = app
    signing = (sessions_dir / SIGNING_KEY_FILE).read_text().strip()
    assert len(signing) >= 32
    config = httpx.get(f"{url}config", timeout=60)
    assert config.status_code == 200 and STORAGE_KEY in config.text  # the BrowserState is in it
    assert PUBLIC_PASSPHRASE in config.text  # the only "secret" a page sees is the public passphrase
    for path in ("config", "", "gradio_api/info"):
        body = httpx.get(f"{url}{path}", timeout=60).text
        for secret in (signing, OLD_SECRET, "operator-set-Vb82mQ1"):
            assert secret not in body, (path, secret[:4])


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def test_a_session_survives_a_reload_and_forged_tokens_get_a_fresh_one(app, browser):
    url, sessions_dir = app
    signing = signing_key(sessions_dir)
    page = browser.new_context(locale="en-US").new_page()
    page.goto(url)
    page.get_by_text("LlamaForCausalLM").filter(visible=True).first.wait_for(timeout=120_000)
    token = _stored_token(page)
    key = verify(token, signing)
    assert key is not None  # the server signed what the browser keeps
    mine = sessions_dir / Sessions.folder_name(key)
    assert {p.parent.parent for p in _upload(page, sessions_dir)} == {mine}
    page.reload()
    # the model facts load after the page is bound to its stored token (ui/app.py: load(bind).then(...))
    page.get_by_text("LlamaForCausalLM").filter(visible=True).first.wait_for(timeout=120_000)
    assert _stored_token(page) == token  # accepted unchanged
    assert {p.parent.parent for p in _upload(page, sessions_dir)} == {
        mine
    }  # the same workspace after the reload

    tag = token.rpartition(".")[2]
    planted = {  # name: (what the browser decrypts, what is stored)
        "forged tag": (f"{key}.{tag[:-2]}xx", _cryptojs_encrypt(f"{key}.{tag[:-2]}xx", PUBLIC_PASSPHRASE)),
        "bare key": (key, _cryptojs_encrypt(key, PUBLIC_PASSPHRASE)),
        "old scheme (old secret)": (None, _cryptojs_encrypt(key, OLD_SECRET)),
        "garbage": (None, "not-even-ciphertext"),
    }
    for name, (plain, value) in planted.items():
        other = browser.new_context(locale="en-US").new_page()
        other.add_init_script(f"localStorage.setItem({json.dumps(STORAGE_KEY)}, {json.dumps(value)})")
        other.goto(url)
        fresh = _stored_token(other, unlike=plain)
        fresh_key = verify(fresh, signing)
        assert fresh_key is not None and fresh_key != key, name  # a new session, never the victim's
        if name == "forged tag":
            kept = _upload(other, sessions_dir)
            assert (
                {p.parent.parent for p in kept} == {sessions_dir / Sessions.folder_name(fresh_key)} != {mine}
            )
        other.context.close()
