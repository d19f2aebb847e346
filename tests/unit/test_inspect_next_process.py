"""``cloudnorm inspect`` says what the next process on a cloud starts with."""

from __future__ import annotations

from cloudnorm import config
from cloudnorm.cli.inspection import next_process, next_process_line

from .conftest import cloud_entry


def test_by_default_a_process_keeps_nothing_for_the_next(write_clouds):
    settings = config.load("work", config_files=[write_clouds({"work": cloud_entry()})])
    kept = next_process(settings)
    assert kept == {"cache": "dogpile.cache.memory", "cache_kept": False, "lifetime": 300.0,
                    "token_kept": False}
    assert next_process_line(kept) == (
        "next process: discovery not kept (dogpile.cache.memory: this process only); "
        "token not kept (cache: auth: true and a keyring keep it)")


def test_a_file_cache_and_the_keyring_are_named(write_clouds, tmp_path):
    entry = cloud_entry(cloudnorm={"cache": {
        "class": "dogpile.cache.dbm", "expiration_time": 600,
        "arguments": {"filename": str(tmp_path / "d.dbm")}}})
    path = write_clouds({"work": entry}, top={"cache": {"auth": True}})
    line = next_process_line(next_process(config.load("work", config_files=[path])))
    assert line == ("next process: discovery kept in dogpile.cache.dbm for 600 s; "
                    "token kept in the keyring")


def test_clouds_without_a_token_say_nothing_of_one(write_clouds):
    path = write_clouds({"ec2": {"cloudnorm": {"provider": "aws", "region": "eu-central-1"}}})
    line = next_process_line(next_process(config.load("ec2", config_files=[path])))
    assert line == "next process: discovery not kept (dogpile.cache.memory: this process only)"
