"""IVR configuration: the TOML schema, defaults, and errors naming file, key and reason."""

from __future__ import annotations

from datetime import date

import pytest

from acd.errors import ConfigError
from acd.ivr import MenuAction, TimeRange
from acd.ivr.config import DEFAULT_CLOSED, DEFAULT_FAILURE
from media.prompt_build import load_texts
from tests.ivr.helpers import EXAMPLE, load

MENU = """
[ivr.m]
prompt = "ivr/m"
[ivr.m.options]
"1" = {action = "echo"}
"""

OFFICE = """
[hours.office]
timezone = "Europe/Paris"
monday = ["08:00-12:00"]
"""


def error(text: str, **kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(text, **kwargs)  # type: ignore[arg-type]
    assert info.value.file == "ivr.toml"
    return info.value


def check(text: str, key: str, *reason: str, **kwargs: object) -> None:
    exc = error(text, **kwargs)
    assert exc.key == key, str(exc)
    for part in reason:
        assert part in exc.reason, str(exc)


# --------------------------------------------------------------------------- the example


def test_example_parses() -> None:
    cfg = load(EXAMPLE, known_queues={"support", "operator", "sales", "sales-fr", "sales-de"},
               known_trunks={"carrier"})
    main = cfg.menu("main")
    assert main.prompt == ("ivr/welcome", "ivr/main-menu")
    assert main.hours == "office" and cfg.schedule_of(main) is cfg.schedules["office"]
    assert main.closed == MenuAction("announce", prompt=("ivr/hours/closed",), then="hangup",
                                     announce_opening=True)
    assert (main.timeout_s, main.digit_timeout_s, main.max_retries) == (5.0, 3.0, 3)
    assert (main.invalid_prompt, main.noinput_prompt) == ("ivr/invalid", "ivr/noinput")
    assert main.on_failure == MenuAction("queue", target="support")
    assert main.options["1"] == MenuAction("queue", target="support", priority=5,
                                           skills=("billing",))
    assert main.options["0"].priority is None
    assert main.options["2"] == MenuAction("menu", target="sales-menu")
    assert main.options["3"] == MenuAction("announce", prompt=("ivr/address",), then="repeat")
    assert main.options["9"] == MenuAction("external", number="+33123456789", trunk="carrier")
    assert main.options["#"] == MenuAction("hangup", prompt=("goodbye",))
    sales = cfg.menu("sales-menu")
    assert sales.barge_in is False and sales.hours == ""
    assert sales.options["3"].prompt == ("ivr/offers", "ivr/more")
    office = cfg.schedules["office"]
    assert office.weekly[0] == (TimeRange(480, 750), TimeRange(810, 1080))
    assert office.weekly[6] == ()
    assert office.holidays[date(2026, 12, 31)] == (TimeRange(840, 1440),)
    assert office.open_exceptions[date(2026, 12, 27)] == (TimeRange(600, 720),)


def test_defaults_use_standard_prompts() -> None:
    cfg = load(MENU + OFFICE + '[ivr.n]\nprompt = "x"\nhours = "office"\n'
               '[ivr.n.options]\n"1" = {action = "repeat"}\n')
    m = cfg.menu("m")
    assert (m.timeout_s, m.digit_timeout_s, m.max_retries, m.barge_in) == (5.0, 3.0, 3, True)
    assert m.on_failure == DEFAULT_FAILURE and cfg.menu("n").closed == DEFAULT_CLOSED
    standard = load_texts()
    for name in (m.invalid_prompt, m.noinput_prompt, *DEFAULT_FAILURE.prompt,
                 *DEFAULT_CLOSED.prompt, "ivr/hours/closed"):
        assert name in standard


def test_known_prompts_checks_only_what_is_written() -> None:
    known = set(load_texts()) | {"ivr/m"}
    load(MENU, known_prompts=known)
    check(MENU.replace('"ivr/m"', '"ivr/mm"'), "ivr.m.prompt", "no such prompt 'ivr/mm'",
          "did you mean 'ivr/m'", known_prompts=known)
    check(MENU + '"2" = {action = "announce", prompt = ["ivr/m", "queue/closd"]}\n',
          'ivr.m.options.2.prompt[1]', "did you mean 'queue/closed'", known_prompts=known)


def test_empty_invalid_prompt_means_none() -> None:
    cfg = load(MENU.replace('prompt = "ivr/m"', 'prompt = "ivr/m"\ninvalid_prompt = ""'))
    assert cfg.menu("m").invalid_prompt == ""


def test_a_date_value_is_a_whole_day_holiday() -> None:
    cfg = load(MENU + OFFICE + "holidays = [2026-05-01]\n")
    assert cfg.schedules["office"].holidays == {date(2026, 5, 1): (TimeRange(0, 1440),)}


def test_options_announce_back_to_same_menu_is_not_a_loop() -> None:
    load(MENU + '"2" = {action = "announce", prompt = "x", then = "m"}\n'
         '"3" = {action = "menu", target = "m"}\n')


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(("text", "key", "reason"), [
    # unknown keys, with suggestions
    (MENU.replace("prompt =", "promt =", 1), "ivr.m.promt", ("did you mean 'prompt'",)),
    (MENU + '"2" = {action = "queue", targte = "s"}\n', "ivr.m.options.2.targte",
     ("did you mean 'target'",)),
    (MENU + OFFICE + 'mondey = ["09:00-10:00"]\n', "hours.office.mondey",
     ("did you mean 'monday'",)),
    (MENU + '"2" = {action = "queu", target = "s"}\n', "ivr.m.options.2.action",
     ("did you mean 'queue'",)),
    (MENU + '"2" = {action = "echo", target = "s"}\n', "ivr.m.options.2.target",
     ("not used with action = 'echo'",)),
    (MENU + '"2" = {target = "s"}\n', "ivr.m.options.2.action", ("required",)),
    # menus and their keys
    ('[ivr]\nmain = 3\n', "ivr.main", ("expected a table",)),
    (MENU.replace("[ivr.m", "[ivr.Main"), "ivr.Main", ("[a-z0-9_-]+",)),
    (MENU.replace("[ivr.m", "[ivr.repeat"), "ivr.repeat", ("reserved",)),
    (MENU.replace('prompt = "ivr/m"\n', ""), "ivr.m.prompt", ("required",)),
    (MENU.replace('"ivr/m"', "[]"), "ivr.m.prompt", ("non-empty array",)),
    (MENU.replace('"ivr/m"', '"../etc/passwd"'), "ivr.m.prompt", ("prompt name",)),
    (MENU.replace('"ivr/m"', '["a", 3]'), "ivr.m.prompt[1]", ("expected a prompt name",)),
    ('[ivr.m]\nprompt = "x"\n', "ivr.m.options", ("required table",)),
    ('[ivr.m]\nprompt = "x"\n[ivr.m.options]\n', "ivr.m.options", ("at least one option",)),
    (MENU + '"E" = {action = "echo"}\n', "ivr.m.options.E", ("DTMF",)),
    (MENU + '"123456789" = {action = "echo"}\n', "ivr.m.options.123456789", ("DTMF",)),
    (MENU + '"2" = "echo"\n', "ivr.m.options.2", ("inline table",)),
    (MENU.replace('prompt = "ivr/m"', 'prompt = "x"\ntimeout_s = 0'), "ivr.m.timeout_s",
     ("between 0.5 and 600",)),
    (MENU.replace('prompt = "ivr/m"', 'prompt = "x"\nmax_retries = 11'), "ivr.m.max_retries",
     ("between 0 and 10",)),
    (MENU.replace('prompt = "ivr/m"', 'prompt = "x"\nbarge_in = "yes"'), "ivr.m.barge_in",
     ("boolean",)),
    # targets
    (MENU + '"2" = {action = "menu", target = "n"}\n[ivr.nn]\nprompt = "x"\n'
     '[ivr.nn.options]\n"1" = {action = "echo"}\n', "ivr.m.options.2.target",
     ("no such menu 'n'", "did you mean 'nn'")),
    (MENU + '"2" = {action = "queue"}\n', "ivr.m.options.2.target", ("required",)),
    (MENU + '"2" = {action = "queue", target = 5}\n', "ivr.m.options.2.target",
     ("expected a string",)),
    (MENU + '"2" = {action = "queue", target = "s", priority = 101}\n',
     "ivr.m.options.2.priority", ("between -100 and 100",)),
    (MENU + '"2" = {action = "queue", target = "s", skills = ["Bad Skill"]}\n',
     "ivr.m.options.2.skills[0]", ("[a-z0-9_-]+",)),
    (MENU + '"2" = {action = "announce", prompt = "x", then = "mm"}\n',
     "ivr.m.options.2.then", ("repeat, back, hangup or a menu", "did you mean 'm'")),
    (MENU + '"2" = {action = "announce"}\n', "ivr.m.options.2.prompt", ("required",)),
    (MENU + '"2" = {action = "hangup", prompt = ["a", "b"]}\n', "ivr.m.options.2.prompt",
     ("one prompt name",)),
    (MENU + '"2" = {action = "external", number = "call me", trunk = "t"}\n',
     "ivr.m.options.2.number", ("phone number",)),
    (MENU + '"2" = {action = "external", number = "123"}\n', "ivr.m.options.2.trunk",
     ("required",)),
    (MENU + '"2" = {action = "hangup", announce_opening = true}\n',
     "ivr.m.options.2.announce_opening", ("only in a menu's closed action",)),
    # hours
    (MENU.replace('prompt = "ivr/m"', 'prompt = "x"\nhours = "ofice"') + OFFICE,
     "ivr.m.hours", ("no such schedule 'ofice'", "did you mean 'office'")),
    (MENU.replace('prompt = "ivr/m"', 'prompt = "x"\nhours = "office"'), "ivr.m.hours",
     ("no [hours.NAME] table",)),
    (MENU.replace('prompt = "ivr/m"', 'prompt = "x"\nclosed = {action = "hangup"}'),
     "ivr.m.closed", ("only with hours",)),
    (MENU + OFFICE.replace("Europe/Paris", "Europe/Pariss"), "hours.office.timezone",
     ("unknown time zone", "did you mean 'Europe/Paris'")),
    (MENU + OFFICE.replace('timezone = "Europe/Paris"\n', ""), "hours.office.timezone",
     ("required",)),
    (MENU + OFFICE.replace("[hours.office]", "[hours.Office]"), "hours.Office",
     ("[a-z0-9_-]+",)),
    (MENU + OFFICE.replace("08:00-12:00", "8h-12h"), "hours.office.monday[0]",
     ("HH:MM-HH:MM",)),
    (MENU + OFFICE.replace("08:00-12:00", "08:00-24:30"), "hours.office.monday[0]",
     ("not a valid time for an end",)),
    (MENU + OFFICE.replace("08:00-12:00", "24:00-12:00"), "hours.office.monday[0]",
     ("not a valid time for a start",)),
    (MENU + OFFICE.replace("08:00-12:00", "08:61-12:00"), "hours.office.monday[0]",
     ("not a valid time",)),
    (MENU + OFFICE.replace("08:00-12:00", "12:00-12:00"), "hours.office.monday[0]",
     ("empty",)),
    (MENU + OFFICE.replace('"08:00-12:00"', '"08:00-12:00", 9'), "hours.office.monday[1]",
     ("expected a string",)),
    (MENU + OFFICE.replace('"08:00-12:00"', '"08:00-12:00", "11:00-13:00"'),
     "hours.office.monday[1]", ("11:00-13:00 overlaps monday[0] (08:00-12:00)",)),
    (MENU + OFFICE.replace('"08:00-12:00"', '"08:00-12:00", "08:00-12:00"'),
     "hours.office.monday[1]", ("overlaps monday[0]",)),
    (MENU + OFFICE + 'sunday = ["22:00-09:00"]\n', "hours.office.monday[0]",
     ("overlaps sunday[0] (22:00-09:00 (after midnight))",)),
    (MENU + OFFICE + 'holidays = ["2026-02-30"]\n', "hours.office.holidays[0]",
     ("not a calendar date",)),
    (MENU + OFFICE + 'holidays = ["25/12/2026"]\n', "hours.office.holidays[0]",
     ("YYYY-MM-DD",)),
    (MENU + OFFICE + 'holidays = ["2026-12-31 22:00-02:00"]\n', "hours.office.holidays[0]",
     ("cannot cross midnight",)),
    (MENU + OFFICE + 'holidays = ["2026-12-31", "2026-12-31 14:00-24:00"]\n',
     "hours.office.holidays[1]", ("overlaps holidays[0]",)),
    (MENU + OFFICE + 'open_exceptions = ["2026-12-27"]\n'
     'holidays = ["2026-12-31 14:00-24:00", "2026-12-31T10:00:00"]\n',
     "hours.office.holidays[1]", ("YYYY-MM-DD",)),
    (MENU + OFFICE + 'open_exceptions = ["2026-12-27 10:00-12:00", "2026-12-27 11:00-13:00"]\n',
     "hours.office.open_exceptions[1]", ("overlaps open_exceptions[0]",)),
    (MENU + OFFICE + "holidays = [2026-12-31T10:00:00]\n", "hours.office.holidays[0]",
     ("expected a date",)),
])
def test_errors(text: str, key: str, reason: tuple[str, ...]) -> None:
    check(text, key, *reason)


def test_known_queues_and_trunks() -> None:
    text = MENU + '"2" = {action = "queue", target = "suport"}\n'
    check(text, "ivr.m.options.2.target", "no such queue 'suport'", "did you mean 'support'",
          known_queues={"support", "sales"})
    load(text)  # unchecked without the set
    check(MENU.replace('prompt = "ivr/m"', 'prompt = "x"\non_failure = {action = "queue", '
                       'target = "nope"}'), "ivr.m.on_failure.target", "no such queue",
          known_queues={"support"})
    check(MENU + '"9" = {action = "external", number = "+331", trunk = "carier"}\n',
          "ivr.m.options.9.trunk", "did you mean 'carrier'", known_trunks={"carrier"})


# --------------------------------------------------------------------------- loops


def two_menus(m_extra: str, n_extra: str) -> str:
    return (OFFICE + f'[ivr.m]\nprompt = "x"\n{m_extra}\n'
            '[ivr.m.options]\n"1" = {action = "echo"}\n'
            f'[ivr.n]\nprompt = "y"\n{n_extra}\n[ivr.n.options]\n"1" = {{action = "echo"}}\n')


@pytest.mark.parametrize(("m_extra", "n_extra", "key", "steps"), [
    ('on_failure = {action = "menu", target = "m"}', "", "ivr.m.on_failure",
     "m (on_failure) -> m"),
    ('on_failure = {action = "repeat"}', "", "ivr.m.on_failure", "m (on_failure) -> m"),
    ('on_failure = {action = "announce", prompt = "x", then = "repeat"}', "",
     "ivr.m.on_failure", "m (on_failure) -> m"),
    ('on_failure = {action = "menu", target = "n"}', 'on_failure = {action = "menu", target = "m"}',
     "ivr.m.on_failure", "m (on_failure) -> n (on_failure) -> m"),
    ('hours = "office"\nclosed = {action = "menu", target = "n"}',
     'on_failure = {action = "announce", prompt = "z", then = "m"}',
     "ivr.m.closed", "m (closed) -> n (on_failure) -> m"),
    ('hours = "office"\nclosed = {action = "announce", prompt = "x", then = "n"}',
     'hours = "office"\nclosed = {action = "menu", target = "m"}',
     "ivr.m.closed", "m (closed) -> n (closed) -> m"),
])
def test_loops_without_caller_input_are_errors(m_extra: str, n_extra: str, key: str,
                                                steps: str) -> None:
    check(two_menus(m_extra, n_extra), key, f"can loop without caller input: {steps}")


def test_chains_without_loops_are_fine() -> None:
    load(two_menus('hours = "office"\nclosed = {action = "menu", target = "n"}\n'
                   'on_failure = {action = "menu", target = "n"}',
                   'on_failure = {action = "queue", target = "q"}'))


@pytest.mark.parametrize("ctx", ["on_failure", "closed"])
def test_back_is_not_allowed_without_caller_input(ctx: str) -> None:
    check(two_menus(f'hours = "office"\n{ctx} = {{action = "back"}}', ""),
          f"ivr.m.{ctx}.action", "'back' is not allowed")
    check(two_menus(f'hours = "office"\n{ctx} = {{action = "announce", prompt = "x", '
                    'then = "back"}', ""), f"ivr.m.{ctx}.then", "'back' is not allowed")


def test_announce_then_defaults() -> None:
    cfg = load(two_menus('hours = "office"\nclosed = {action = "announce", prompt = "c"}\n'
                         'on_failure = {action = "announce", prompt = "f"}', "")
               .replace('"1" = {action = "echo"}', '"1" = {action = "announce", prompt = "a"}', 1))
    m = cfg.menu("m")
    assert m.closed.then == "hangup" and m.on_failure.then == "hangup"
    assert m.options["1"].then == "repeat"


def test_unknown_menu_lookup_suggests() -> None:
    from acd.ivr import IvrError
    cfg = load(MENU)
    with pytest.raises(IvrError, match="did you mean 'm'"):
        cfg.menu("mm")


def test_the_documented_schema_is_valid() -> None:
    import acd.ivr.config as module
    doc = module.__doc__ or ""
    text = doc.split("```toml", 1)[1].split("```", 1)[0]
    cfg = load(text + '[ivr.sales-menu]\nprompt = "s"\n[ivr.sales-menu.options]\n'
               '"1" = {action = "back"}\n')
    main = cfg.menu("main")
    assert main.closed.announce_opening and set(main.options) == {
        "1", "2", "3", "4", "9", "*", "8", "#"}
    assert cfg.schedules["office"].weekly[4] == (TimeRange(480, 1080), TimeRange(1320, 1440))
