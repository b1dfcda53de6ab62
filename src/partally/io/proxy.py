"""Which proxy each request of a batch goes through, by httpx's rules.

As `httpx.Client` decides it: a `proxy=` argument is used for every URL; else, with `trust_env`
(the default), the environment's `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY` (and
their lower-case forms, which win, as `urllib.request.getproxies` reads them) are read once, when
the batch starts, with httpx's own `get_environment_proxies` and matched with its `URLPattern`,
most specific pattern first. A `NO_PROXY` entry is a host (`example.com` also matches its
subdomains, `.example.com` only them), an IP address, `localhost`, or `*` for every URL.

partally's transports speak to http and https proxies (plain requests in absolute form, https
through a CONNECT tunnel), with the proxy URL's user and password as Basic credentials. A SOCKS
proxy is refused with a ValueError when the batch starts, never bypassed: httpx needs its
`socksio` package for those, and aiohttp and urllib3 other packages again.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
from httpx._utils import URLPattern, get_environment_proxies  # httpx's own rules, not a copy

__all__ = ["Proxies", "proxy_authorization"]

_ENV_NAMES = {"http://": "HTTP_PROXY", "https://": "HTTPS_PROXY", "all://": "ALL_PROXY"}


def proxy_authorization(proxy: httpx.Proxy) -> str | None:
    """The `Proxy-Authorization` value for the proxy's credentials (Basic), None without any."""
    if proxy.auth is None:
        return None
    user, password = proxy.auth
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _proxy(value: Any, where: str) -> httpx.Proxy:
    """`value` (a URL, or an httpx.Proxy) as an http or https httpx.Proxy; ValueError naming
    `where` otherwise."""
    try:
        proxy = value if isinstance(value, httpx.Proxy) else httpx.Proxy(value)
    except (TypeError, ValueError, httpx.InvalidURL) as exc:
        raise ValueError(f"{where} is not a usable proxy URL ({exc})") from None
    scheme = proxy.url.scheme
    if scheme not in ("http", "https"):
        raise ValueError(
            f"{where}: {scheme} proxies are not supported by partally's transports (http and "
            "https proxies are); unset it, or pass trust_env=False or proxy= to choose"
        )
    if not proxy.url.host:
        raise ValueError(f"{where} is not a usable proxy URL (no host)")
    return proxy


class Proxies:
    """The proxy for each URL of one batch (None: direct), as `httpx.Client` chooses it.

    `proxy`: a URL (str or httpx.URL) or an `httpx.Proxy` for every request; else the
    environment's when `trust_env`; else none. ValueError for a proxy that is not http or https.
    """

    def __init__(self, proxy: Any = None, trust_env: bool = True) -> None:
        mounts: dict[URLPattern, httpx.Proxy | None] = {}
        if proxy is not None:
            if not isinstance(proxy, (str, httpx.URL, httpx.Proxy)):
                raise TypeError(f"proxy must be a URL (str) or an httpx.Proxy, not {type(proxy).__name__}")
            mounts[URLPattern("all://")] = _proxy(proxy, f"proxy={str(getattr(proxy, 'url', proxy))!r}")
        elif trust_env:
            for key, url in get_environment_proxies().items():
                where = f"{_ENV_NAMES.get(key, 'NO_PROXY')} in the environment ({url!r})"
                mounts[URLPattern(key)] = None if url is None else _proxy(url, where)
        # Most specific first, as httpx orders its mounts.
        self._mounts = sorted(mounts.items())
        self._chosen: dict[tuple[str, str, int | None], httpx.Proxy | None] = {}

    def __bool__(self) -> bool:
        """True if any URL may go through a proxy."""
        return any(proxy is not None for _, proxy in self._mounts)

    def for_url(self, url: httpx.URL) -> httpx.Proxy | None:
        """The proxy for `url`, or None to go direct."""
        key = (url.scheme, url.host, url.port)
        try:
            return self._chosen[key]
        except KeyError:
            pass
        chosen = next((proxy for pattern, proxy in self._mounts if pattern.matches(url)), None)
        if len(self._chosen) < 65536:  # one entry per host: bounded however many hosts
            self._chosen[key] = chosen
        return chosen
