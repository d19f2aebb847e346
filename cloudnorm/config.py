"""Configuration: ``clouds.yaml`` read through ``openstack.config``.

cloudnorm does not parse ``clouds.yaml`` itself: openstack.config already
knows the search path, ``OS_CLOUD``/``OS_CLIENT_CONFIG_FILE``, ``secure.yaml``,
vendor profiles, the ``networks:`` keys and the ``cache:`` section. What
cloudnorm adds is a ``cloudnorm:`` mapping inside a cloud entry::

    clouds:
      mycloud:
        auth: {...}
        cloudnorm:
          provider: openstack        # a registered provider; openstack when not said
          profile: generic           # a quirk profile from cloudnorm/profiles
          defaults: {image: ubuntu-22.04, min_ram: 2048}

and a clear error where openstack.config would fail late or quietly.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import yaml

from cloudnorm import errors
from cloudnorm.drivers import registry
from cloudnorm.provision.request import check_defaults
from cloudnorm.settings import CacheSettings, CloudSettings

if TYPE_CHECKING:  # pragma: no cover - imported lazily: openstack costs ~1 s at import
    from openstack.config.cloud_region import CloudRegion

__all__ = ["CacheSettings", "CloudSettings", "load"]


def load(cloud: str | None = None, *, config_files: list[str] | None = None,
         **overrides: Any) -> CloudSettings:
    """Resolve the settings of ``cloud`` (``OS_CLOUD`` when None).

    ``overrides`` are passed to openstack.config as it accepts them
    (``region_name``, ``auth``...); a ``cloudnorm`` override is merged into the
    entry's ``cloudnorm:`` mapping.
    """
    from openstack import exceptions as os_exc
    from openstack.config import loader

    cloudnorm_overrides = dict(overrides.pop("cloudnorm", None) or {})
    if config_files:
        missing = [f for f in config_files if not os.path.exists(f)]
        if missing:
            raise errors.ConfigError(
                f"config file {missing[0]} does not exist; pass an existing clouds.yaml")
        search = list(config_files)
    else:
        search = [os.environ.get("OS_CLIENT_CONFIG_FILE") or "", *loader.CONFIG_FILES]
    # openstack.config skips or crashes on a malformed file: check it first.
    _check_yaml([f for f in search if f])

    class _Loader(loader.OpenStackConfig):  # type: ignore[misc]
        def _get_envvar(self, key: str, default: str | None = None) -> str | None:
            # Files named by the caller win over OS_CLIENT_CONFIG_FILE.
            if config_files and key in ("OS_CLIENT_CONFIG_FILE", "OS_CLIENT_SECURE_FILE"):
                return default
            return super()._get_envvar(key, default)  # type: ignore[no-any-return]

    kwargs: dict[str, Any] = {"load_envvars": True}
    if config_files:
        kwargs["config_files"] = list(config_files)
    try:
        config = _Loader(app_name="cloudnorm", **kwargs)
    except (os_exc.ConfigException, AttributeError, TypeError) as exc:
        raise errors.ConfigError(f"cannot read cloud configuration: {exc}") from exc
    source = getattr(config, "config_filename", None)
    name = cloud or os.environ.get("OS_CLOUD") or None
    if name is None:
        names = [n for n in config.get_cloud_names() if n != "defaults"]
        if len(names) == 1:
            name = names[0]
        else:
            raise errors.ConfigError(
                "no cloud named: pass cloud=NAME or set OS_CLOUD"
                + (f"; {source} defines {', '.join(sorted(names))}" if names else
                   "; no clouds.yaml was found (searched "
                   + ", ".join(f for f in search if f) + ")"))
    if name not in config.get_cloud_names():
        known = sorted(n for n in config.get_cloud_names() if n != "defaults")
        where = source or "no clouds.yaml found"
        raise errors.ConfigError(
            f"unknown cloud '{name}' ({where}); known clouds: {', '.join(known) or 'none'}",
            cloud=name)
    # What the operator wrote, before openstack.config fills in defaults and
    # turns values into strings: cloudnorm must not mistake a default for a word.
    written = dict((config.cloud_config.get("clouds") or {}).get(name) or {})

    try:
        raw_region = config.get_one(name, validate=False, **overrides)
    except os_exc.ConfigException as exc:
        raise errors.ConfigError(f"cannot use cloud '{name}' from {source}: {exc}",
                                 cloud=name) from exc
    options = written.get("cloudnorm") or {}
    if not isinstance(options, dict):
        raise errors.ConfigError(f"cloud '{name}' ({source}): cloudnorm: must be a mapping",
                                 cloud=name)
    options = dict(options)
    options.update(cloudnorm_overrides)
    keys = registry.option_keys()
    unknown = sorted(set(options) - set(keys))
    if unknown:
        raise errors.ConfigError(
            f"unknown key(s) {', '.join(unknown)} in the cloudnorm: section of cloud '{name}'"
            f" ({source}); known keys: {', '.join(sorted(keys))}", cloud=name)
    provider = str(options.get("provider", registry.DEFAULT_PROVIDER)).lower()
    if provider not in registry.available():
        raise errors.ConfigError(
            f"cloud '{name}' ({source}) names provider '{provider}'; use one of "
            + ", ".join(registry.available()), cloud=name)

    resolve = registry.spec(provider).resolve
    region: CloudRegion | None = (resolve(config, name, source, overrides)
                                  if resolve is not None else None)
    cache = _cache_settings(raw_region, options.get("cache"),
                            explicit=config.cloud_config.get("cache"))
    access, access_source = _access(name, source, options.get("access"), written.get("private"))
    return CloudSettings(
        name=name,
        provider=provider,
        region=(region.region_name if region is not None else options.get("region")) or None,
        profile=options.get("profile"),
        options=options,
        cache=cache,
        source=source,
        networks=tuple(dict(n) for n in written.get("networks") or ()),
        access=access,
        access_source=access_source,
        create_defaults=check_defaults(options.get("defaults"), f"cloud '{name}' ({source})"),
        openstack=region,
    )


def _access(name: str, source: str | None, own: Any, private: Any) -> tuple[str, str]:
    """``cloudnorm: access:`` or openstacksdk's ``private:`` flag (which every
    openstacksdk user's clouds.yaml may already carry); when both are set they must
    agree."""
    if own is not None and own not in ("public", "private"):
        raise errors.ConfigError(
            f"cloud '{name}' ({source}): cloudnorm: access: must be public or private, "
            f"not {own!r}", cloud=name)
    if private is not None and not isinstance(private, bool):
        raise errors.ConfigError(
            f"cloud '{name}' ({source}): private: must be true or false, not {private!r}",
            cloud=name)
    if own is not None and private is not None and (own == "private") != private:
        raise errors.ConfigError(
            f"cloud '{name}' ({source}) says both private: {str(private).lower()} and "
            f"cloudnorm: access: {own}; keep one", cloud=name)
    if own is not None:
        return own, f"cloudnorm: access: {own}"
    if private is not None:
        return ("private" if private else "public"), f"private: {str(private).lower()}"
    return "public", ""


def _check_yaml(paths: list[str]) -> None:
    """Fail on a clouds.yaml that openstack.config would silently skip or crash on.

    openstack.config ignores a file it cannot parse and goes on as if there
    were none, which surfaces much later as "cloud not found".
    """
    for path in paths:
        if not os.path.exists(path):
            continue
        try:
            with open(path, encoding="utf-8") as stream:
                data = yaml.safe_load(stream)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise errors.ConfigError(
                f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}; fix the file"
            ) from exc
        except OSError as exc:
            raise errors.ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        if data is not None and not isinstance(data, dict):
            raise errors.ConfigError(f"{path} must hold a mapping with a 'clouds:' key")
        if isinstance(data, dict) and not isinstance(data.get("clouds", {}), dict):
            raise errors.ConfigError(f"{path}: 'clouds:' must be a mapping of cloud names")
        if isinstance(data, dict):
            for cloud_name, entry in (data.get("clouds") or {}).items():
                if not isinstance(entry, dict):
                    raise errors.ConfigError(
                        f"{path}: cloud '{cloud_name}' must be a mapping of settings")
        # openstack.config uses the first file it finds: so do we.
        return


def _cache_settings(region: Any, own: dict[str, Any] | None,
                    explicit: dict[str, Any] | None = None) -> CacheSettings:
    """openstack.config's ``cache:`` section, refined by ``cloudnorm: cache:``.

    openstack.config defaults to the null backend; cloudnorm's discovery is
    meant to be cached, so it defaults to memory with a 5 minute lifetime --
    unless the file asks for the null backend in so many words.
    """
    backend = region.get_cache_class() if region is not None else "dogpile.cache.null"
    expiration = float(region.get_cache_expiration_time() or 0) if region is not None else 0.0
    expirations = {k: float(v) for k, v in (
        region.get_cache_expirations() if region is not None else {}).items()}
    arguments = dict(region.get_cache_arguments() or {}) if region is not None else {}
    asked_null = isinstance(explicit, dict) and explicit.get("class") == "dogpile.cache.null"
    if backend == "dogpile.cache.null" and not asked_null:
        backend, expiration = "dogpile.cache.memory", expiration or 300.0
    expiration = expiration or 300.0
    if own:
        if not isinstance(own, dict):
            raise errors.ConfigError("cloudnorm: cache: must be a mapping")
        backend = own.get("class", own.get("backend", backend))
        expiration = float(own.get("expiration_time", expiration))
        expirations.update({k: float(v) for k, v in (own.get("expiration") or {}).items()})
        arguments.update(own.get("arguments") or {})
    return CacheSettings(backend=backend, expiration_time=expiration,
                         expirations=expirations, arguments=arguments)
