"""The COCO caption tokenisation (pycocoevalcap's ``PTBTokenizer``) in pure Python, without Java.

pycocoevalcap runs Stanford CoreNLP 3.4.1's ``edu.stanford.nlp.process.PTBTokenizer -preserveLines -lowerCase``
over all captions (one per line), then drops the tokens in its ``PUNCTUATIONS`` list. :func:`ptb_tokenize`
reproduces that: a longest-match lexer over the token classes of CoreNLP 3.4.1's ``PTBLexer`` with its default
options (PTB3 escaping: ``(`` -> ``-LRB-``, quotes -> ````/''``, dashes -> ``--``, spaces inside fractions and phone
numbers -> U+00A0; no Americanisation, no ``/`` escaping), lower-cased, punctuation list removed. Some results a
reader may not expect, all as the Java tokenizer gives them: ``12.5`` stays one token, ``50%`` -> ``50 %``,
``No. 5`` keeps ``no.``, ``(a)`` -> ``-lrb- a -rrb-`` (the list removes only upper-case ``-LRB-``, which
``-lowerCase`` never leaves), ``don't`` -> ``do n't``, ``£5`` -> ``# 5``.

Context: the Java lexer looks ahead across the line end into the next caption. Each text here is tokenised as a
line followed by another that starts with a lower-case letter (how pycocoevalcap sees most captions). A caption
followed by one that starts with a capital differs only when it ends in a one-letter acronym before certain words
(``I.`` -> ``i`` rather than ``i.``); the file's last caption only when it ends in ``'90``-like years or a smiley.
Characters outside the Basic Multilingual Plane are dropped (the 3.4.1 lexer reads UTF-16 units and deletes
them); any line-break character counts as a space (pycocoevalcap replaces only ``\\n``, and another break would
shift all its later captions). The case table in ``tests/test_ptb_tokenizer.py`` holds the Java tokenizer's outputs.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from functools import cache

import regex

# pycocoevalcap/tokenizer/ptbtokenizer.py: tokens removed after tokenisation (compared case-sensitively).
PUNCTUATIONS = frozenset(
    ["''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--", "...", ";"]
)

_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\u2028\u2029\x0b\x0c\x85"})
_SENTINEL = "\nx"  # the next line, starting in lower case (see module doc)

# Characters the 3.4.1 grammar adds to Java's letters (combining marks and a few modifier/script signs).
_EXTRA_LETTER_RANGES = (
    (0x00AD, 0x00AD), (0x0237, 0x024F), (0x02C2, 0x02C5), (0x02D2, 0x02DF), (0x02E5, 0x02FF), (0x0300, 0x036F),
    (0x0370, 0x037D), (0x0384, 0x0385), (0x03CF, 0x03CF), (0x03F6, 0x03F6), (0x03FC, 0x03FF), (0x0483, 0x0487),
    (0x04CF, 0x04CF), (0x04F6, 0x04FF), (0x0510, 0x0525), (0x055A, 0x055F), (0x0591, 0x05BD), (0x05BF, 0x05BF),
    (0x05C1, 0x05C2), (0x05C4, 0x05C5), (0x05C7, 0x05C7), (0x0615, 0x061A), (0x063B, 0x063F), (0x064B, 0x065E),
    (0x0670, 0x0670), (0x06D6, 0x06EF), (0x06FA, 0x06FF), (0x070F, 0x070F), (0x0711, 0x0711), (0x0730, 0x074F),
    (0x0750, 0x077F), (0x07A6, 0x07B1), (0x07CA, 0x07F5), (0x07FA, 0x07FA), (0x0900, 0x0903), (0x093C, 0x093C),
    (0x093E, 0x094E), (0x0951, 0x0955), (0x0962, 0x0963), (0x0981, 0x0983), (0x09BC, 0x09C4), (0x09C7, 0x09C8),
    (0x09CB, 0x09CD), (0x09D7, 0x09D7), (0x09E2, 0x09E3), (0x0A01, 0x0A03), (0x0A3C, 0x0A3C), (0x0A3E, 0x0A4F),
    (0x0A81, 0x0A83), (0x0ABC, 0x0ACF), (0x0B82, 0x0B82), (0x0BBE, 0x0BC2), (0x0BC6, 0x0BC8), (0x0BCA, 0x0BCD),
    (0x0C01, 0x0C03), (0x0C3E, 0x0C56), (0x0D3E, 0x0D44), (0x0D46, 0x0D48), (0x0E30, 0x0E3A), (0x0E47, 0x0E4E),
    (0x0EB1, 0x0EBC), (0x0EC8, 0x0ECD),
)


def _class_of(predicate: Callable[[str], bool], extra: tuple[tuple[int, int], ...] = ()) -> str:
    """The body of a regex character class for the BMP code points where ``predicate`` holds (plus ``extra``)."""
    points = {cp for cp in range(0x10000) if not 0xD800 <= cp <= 0xDFFF and predicate(chr(cp))}
    for lo, hi in extra:
        points.update(range(lo, hi + 1))
    ranges, start, prev = [], None, None
    for cp in sorted(points):
        if start is None:
            start = prev = cp
        elif cp == prev + 1:
            prev = cp
        else:
            ranges.append((start, prev))
            start = prev = cp
    if start is not None:
        ranges.append((start, prev))
    return "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges)


@cache
def _rules() -> list[tuple[regex.Pattern, str]]:
    """(pattern, action) in the grammar's order. A pattern's group ``t`` is the token; whatever follows it in
    the match is trailing context (counted for the longest match, not consumed)."""
    letter = _class_of(lambda c: unicodedata.category(c).startswith("L"))  # JFlex [:letter:] (Java isLetter)
    digit = _class_of(lambda c: unicodedata.category(c) == "Nd")  # [:digit:]
    upper = _class_of(lambda c: unicodedata.category(c) == "Lu")  # [:uppercase:]
    L, D, U = f"[{letter}]", f"[{digit}]", f"[{upper}]"
    ci = "(?i:{})".format  # JFlex %caseless: literals match either case, character classes do not

    splet = rf"&[aeiouAEIOU]{ci('acute|grave|uml')};"
    lx = f"(?:[{_class_of(lambda c: unicodedata.category(c).startswith('L'), _EXTRA_LETTER_RANGES)}]|{splet})"
    space = r"[ \t\u00A0\u2000-\u200A\u3000]"
    newline = r"(?:\r\n?|\n|\u2028|\u2029|\x0b|\x0c|\x85)"
    spacenl = f"(?:{space}|{newline})"
    sgml = (r"<(?:[!?][A-Za-z\-][^>\r\n]*|[A-Za-z][A-Za-z0-9_:.\-]*(?: +(?:[A-Za-z][A-Za-z0-9_:.\-]*|"
            r"[A-Za-z][A-Za-z0-9_:.\-]* *= *(?:'[^']*'|\"[^\"]*\")))* */?|/[A-Za-z][A-Za-z0-9_:.\-]*) *>")
    apos = rf"(?:['\u0092\u2019]|{ci('&apos;')})"
    apos_etc = rf"(?:{apos}|[`\u0091\u2018\u201B])"
    num = rf"(?:{D}+|{D}*(?:[.:,\u00AD\u066B\u066C]{D}+)+)"
    word = rf"{lx}(?:{lx}|{D})*(?:[.!?]{lx}(?:{lx}|{D})*)*"
    redaux = rf"{apos}(?:[msdMSD]|{ci('re|ve|ll')})"
    sword = r"[A-Za-z\u00AD]*[A-MO-Za-mo-z]\u00AD*"
    sredaux = rf"{ci('n')}{apos_etc}{ci('t')}"
    apoword = "|".join([
        rf"{apos}{ci('n')}{apos}?", rf"[lLdDjJ]{apos}", rf"{ci('dunkin|somethin|ol')}{apos}", rf"{apos}{ci('em')}",
        rf"[A-HJ-XZn]{apos_etc}{L}{L}{L}*", rf"{apos}[2-9]0{ci('s')}", rf"{apos}{ci('till?')}",
        rf"{L}{L}*[aeiouyAEIOUY]{apos_etc}[aeiouA-Z]{L}*", rf"{apos}{ci('cause')}", ci(r"cont'd\.?"),
        ci("'twas|nor'easter|c'mon|e'er|s'mores|ev'ry|li'l|nat'l"), rf"{ci('o')}{apos_etc}{ci('o')}",
    ])
    url_end = r"[^ \t\n\f\r\"<>|.!?(){},\-]"
    full_url = rf"{ci('https?://')}[^ \t\n\f\r\"<>|(){{}}]+{url_end}"
    likely_url = (rf"(?:{ci('www')}\.(?:[^ \t\n\f\r\"<>|.!?(){{}},]+\.)+[a-zA-Z]{{2,4}}|"
                  rf"(?:[^ \t\n\f\r\"`'<>|.!?(){{}},-_$]+\.)+{ci('com|net|org|edu')})"
                  rf"(?:/[^ \t\n\f\r\"<>|()]+{url_end})?")
    email_part = r"[^ \t\n\f\r\"<>|(){}.\u00A0]+"
    email = (rf"(?:{ci('&lt;')}|<)?[a-zA-Z0-9][^ \t\n\f\r\"<>|()\u00A0{{}}]*@(?:{email_part}\.)*{email_part}"
             rf"(?:{ci('&gt;')}|>)?")
    twitter = rf"@[a-zA-Z_][a-zA-Z_0-9]*|#{lx}+"
    hyphen = r"[\-_\u058A\u2010\u2011]"
    thing_part = rf"(?:[dDoOlL]{apos_etc}(?:{L}|{D}))?(?:{L}|{D})+"
    thing = rf"{thing_part}(?:{hyphen}{thing_part})*"
    thinga = rf"[A-Z]+(?:(?:[+&]|{ci('&amp;')})[A-Z]+)+"
    thing3 = r"[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}(?:\\?/[A-Za-z0-9]+(?:-[A-Za-z]+){0,2}){1,2}"
    acro_tail = ci(r"(?:canada|sino|korean|eu|japan|non)-u\.s|u\.s\.-(?:u\.k|u\.s\.s\.r)")
    acro = rf"(?:[A-Za-z](?:\.[A-Za-z])*|{acro_tail})"
    acro2 = rf"(?:[A-Za-z](?:\.[A-Za-z])+|{acro_tail})"
    hthing = rf"[A-Za-z0-9][A-Za-z0-9.,\u00AD]*(?:-(?:[A-Za-z0-9\u00AD]+|{acro2}\.))+"
    abstate = (rf"{ci('ala|ariz')}|[A]{ci('z')}|[A]{ci('rk')}|{ci('calif|colo|conn|ct|dak')}|[D]{ci('el')}|"
               rf"{ci('fla|ga')}|[I]{ci('ll')}|{ci('ind|kans?|ky')}|[L]{ci('a')}|[M]{ci('ass')}|"
               rf"{ci('md|mich|minn')}|[M]{ci('iss')}|{ci('mo|mont|neb|nev|okla')}|[O]{ci('re')}|[P]{ci('a')}|"
               rf"{ci('penn|tenn')}|[T]{ci('ex')}|{ci('va|vt')}|[W]{ci('ash')}|{ci('wisc?|wyo')}")
    abcomp = rf"{ci('inc|cos?|corp')}|{ci('pp?t')}[ye]{ci('s?')}|{ci('ltd|plc|rt|bancorp|bhd|assn|univ|intl|sys')}"
    abptit = ci(r"jr|sr|bros|(?:ed|ph)\.d|blvd|rd|esq")
    abbrev1 = (rf"(?:{ci('jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|mon|tue|tues|wed|thu|thurs|fri')}|"
               rf"{abstate}|{abcomp}|{ci('tel|est|ext|sq')}|{abptit}|"
               rf"{ci('etc|al|seq|bldg')})\.")
    abtitle = (rf"{ci('mr|mrs|ms')}|[M]{ci('iss')}|"
               + ci("drs?|profs?|sens?|reps?|attys?|lt|col|gen|messrs|govs?|adm|rev|maj|sgt|cpl|pvt|capt|ste?|ave|"
                    "pres|lieut|hon|brig|co?mdr|pfc|spc|supts?|det|mt|ft|adj|adv|asst|assoc|ens|insp|mlle|mme|msgr|"
                    "sfc"))
    abcomp2 = rf"{ci('invt|elec|natl')}|{ci('m')}[ft]{ci('g')}|{ci('dept')}"
    abother = ci(r"vs|alex|wm|jos|cie|a\.k\.a|cf|treas|ph")
    abbrev4 = rf"(?:{abtitle}|{abother}|{acro}|{abcomp2})"
    # An acronym is sentence-final before these words (capital as a class, the rest in either case).
    acronym_next = "|".join(f"[{w[0]}]{ci(regex.escape(w[1:]))}" if len(w) > 1 else f"[{w}]" for w in (
        "About According Additionally After An A As At But Earlier He Her Here However If In It Last Many More Mr. "
        "Ms. Now Once One Other Our She Since So Some Such That The Their Then There These They This We When While "
        "What Yet You").split())
    extensions = ("bat|bmp|c|class|cgi|cpp|dll|doc|docx|exe|gif|gz|h|htm|html|jar|java|jpeg|jpg|mov|mp3|pdf|php|pl|"
                  "png|ppt|ps|py|sql|tar|txt|wav|x|xml|zip")
    filename = rf"(?:{lx}|{D})+(?:\.(?:{lx}|{D})+)*\.{ci(extensions)}"
    phone = (r"(?:(?:\([0-9]{2,3}\)[ \u00A0]?|(?:\+\+?)?(?:[0-9]{2,4}[\- \u00A0])?[0-9]{2,4}[\- \u00A0])"
             r"[0-9]{3,4}[\- \u00A0]?[0-9]{3,5}|(?:(?:\+\+?)?[0-9]{2,4}\.)?[0-9]{2,4}\.[0-9]{3,4}\.[0-9]{3,5})")
    dblquot = rf"(?:\"|{ci('&quot;')})"
    smiley = r"[<>]?[:;=][\-o*']?[()DPdpO\\{@|\[\]]"
    asian = (rf"[\^x=~<>]\.\[\^{ci('x')}=~<>\]|[\-\^x=~<>']_[\-\^x=~<>']|\([\-\^x=~<>'][_.]?[\-\^x=~<>']\)|"
             r"\([\^x=~<>']-[\^x=~<>'`]\)")
    quotes = rf"(?:{apos}|''|[`\u2018\u2019\u201A\u201B\u201C\u201D\u0091\u0092\u0093\u0094\u201E\u201F\u2039\u203A"\
             r"\u00AB\u00BB]{1,2})"
    misc = (r"[+%&~\^|\\\u00A6\u00A7\u00A8\u00A9\u00AC\u00AE\u00AF\u00B0-\u00BA\u00D7\u00F7\u0387\u05BE\u05C0"
            r"\u05C3\u05C6\u05F3\u05F4\u0600-\u0603\u0606-\u060A\u060C\u0614\u061B\u061E\u066A\u066D\u0703-\u070D"
            r"\u07F6-\u07F8\u0964\u0965\u0E4F\u1FBD\u2016\u2017\u2020-\u2023\u2030-\u2038\u203B\u203E-\u2042\u2044"
            r"\u207A-\u207F\u208A-\u208E\u2100-\u214F\u2190-\u21FF\u2200-\u2BFF\u3012\u30FB\uFF01-\uFF0F"
            r"\uFF1A-\uFF20\uFF3B-\uFF40\uFF5B-\uFF65]")
    insentp = r"[,;:\u3001]"
    tbspec = (ci(r"-(?:rrb|lrb|rcb|lcb|rsb|lsb)-|c\.d\.s|pro-|anti-|s(?:&|&amp;)p-500|s(?:&|&amp;)ls") + "|"
              + rf"{ci('cap')}{apos}{ci('n')}|{ci('c')}{apos}{ci('est')}")

    table: list[tuple[str, str, str]] = [  # (token, trailing context, action)
        (ci(r"c\+\+"), "", "keep"),
        (ci("[cf]#"), "", "keep"),
        (ci("cannot"), "", "back3"),
        (ci("'twas"), "", "back3"),
        (ci("'tis"), "", "back2"),
        (ci("gonna|gotta|lemme|gimme|wanna"), "", "back2"),
        (sgml, "", "nbsp"),
        (rf"{ci('&(?:md|mdash|ndash);')}|[\u0096\u0097\u2013\u2014\u2015]", "", "mdash"),
        (ci("&amp;"), "", "amp"),
        (ci("&(?:ht|tl|ur|lr|qc|ql|qr|odq|cdq|#[0-9]+);"), "", "keep"),
        (word, redaux, "soft"),
        (sword, sredaux, "soft"),
        (word, "", "soft"),
        (apoword, "", "keep"),
        (rf"{ci('y')}{apos}", L, "keep"),
        (full_url, "", "keep"),
        (likely_url, "", "keep"),
        (email, "", "keep"),
        (twitter, "", "keep"),
        (redaux, "[^A-Za-z]", "right"),
        (sredaux, "[^A-Za-z]", "right"),
        (rf"{D}{{1,2}}[\-/]{D}{{1,2}}[\-/]{D}{{2,4}}", "", "keep"),
        (rf"[\-+]?{num}", "", "soft"),
        (r"[\u207A\u207B\u208A\u208B]?(?:[\u2070\u00B9\u00B2\u00B3\u2074-\u2079]+|[\u2080-\u2089]+)", "", "keep"),
        (rf"(?:{D}{{1,4}}[\- \u00A0])?{D}{{1,4}}(?:\\?/|\u2044){D}{{1,4}}", "", "nbsp"),
        (r"[\u00BC\u00BD\u00BE\u2153-\u215E]", "", "fraction"),
        (tbspec, "", "amp"),
        (thing3, "", "keep"),
        (r"[A-Z]*\$|#", "", "keep"),
        (r"[\u00A2\u00A3\u00A4\u00A5\u0080\u20A0\u20AC\u060B\u0E3F\u20A4\uFFE0\uFFE1\uFFE5\uFFE6]", "", "currency"),
        (rf"{acro}\.", rf"{spacenl}+(?:{acronym_next}|{sgml}){spacenl}", "acronym"),
        (ci(r"(?:ca|figs?|prop|nos?|art|bldg|pp|op)\."), rf"{spacenl}?{D}", "keep"),
        (rf"(?:{ci('pt')}[eyEY]|{ci('co')})\.", rf"{space}{ci('ltd|lim')}", "keep"),
        (abbrev1, rf"{spacenl}(?:{spacenl}|{U}|{sgml})", "again1"),
        (abbrev1, r"[\s\S][\s\S]", "keep"),
        (abbrev1, "", "again1"),
        (rf"{abbrev4}\.", "", "keep"),
        (abbrev4, space, "keep"),
        (acro, spacenl, "keep"),
        (rf"{apos}[0-9][0-9]", spacenl, "keep"),
        (filename, rf"{spacenl}|[.?!,]", "keep"),
        (rf"{word}\.", insentp, "soft"),
        (phone, "", "phone"),
        (dblquot, "[A-Za-z0-9$]", "left"),
        (dblquot, "", "right"),
        ("\x7f", "", "skip"),
        (rf"<|{ci('&lt;')}", "", "lt"),
        (rf">|{ci('&gt;')}", "", "gt"),
        (smiley, "[^A-Za-z0-9]", "parens"),
        (asian, "", "parens"),
        (r"\{", "", "-LCB-"),
        (r"\}", "", "-RCB-"),
        (r"\[", "", "-LSB-"),
        (r"\]", "", "-RSB-"),
        (r"\(", "", "-LRB-"),
        (r"\)", "", "-RRB-"),
        (r"-+", "", "hyphens"),
        (r"\.{3,5}|(?:\.[ \u00A0]){2,4}\.|[\u0085\u2026]", "", "ellipsis"),
        (r"@+|#+|_+", "", "keep"),
        (r"\*+|(?:\\\*){1,3}", "", "keep"),
        (insentp, "", "keep"),
        (r"[?!]+", "", "keep"),
        (r"[.\u00A1\u00BF\u037E\u0589\u061F\u06D4\u0700-\u0702\u07FA\u3002]", "", "keep"),
        ("=", "", "keep"),
        ("/", "", "keep"),
        (rf"{hthing}\.", insentp, "soft"),
        (hthing, "", "soft"),
        (rf"{thing}\.", insentp, "keep"),
        (thing, "", "keep"),
        (rf"{thinga}\.", insentp, "amp"),
        (thinga, "", "amp"),
        ("'", r"[A-Za-z][^ \t\n\r\u00A0]", "left"),
        (redaux, "", "right"),
        (sredaux, "", "right"),
        (quotes, "", "right"),
        ("<<|>>", "", "keep"),
        (misc, "", "keep"),
        (rf"\x00|{space}+|[\u200B\u200E\u200F\uFEFF]|{ci('&nbsp;')}", "", "skip"),
        (newline, "", "newline"),
        (r"[\s\S]", "", "skip"),  # untokenizable: Java's default deletes it (with a warning)
    ]
    # (?p): POSIX leftmost-longest, as JFlex matches each rule.
    return [(regex.compile(f"(?p)(?P<t>{tok})(?:{ctx})" if ctx else f"(?p)(?P<t>{tok})"), act)
            for tok, ctx, act in table]


_FRACTIONS = str.maketrans({"\u00BC": "1/4", "\u00BD": "1/2", "\u00BE": "3/4", "\u2153": "1/3", "\u2154": "2/3"})
_CURRENCY = str.maketrans({"\u00A2": "cents", "\u00A3": "#", "\u0080": "$", "\u00A4": "$", "\u20A0": "$", "\u20AC": "$"})
_LEFT_SINGLE, _RIGHT_SINGLE = "\u0091\u2018\u201B\u2039", "\u0092\u2019\u203A"
_LEFT_DOUBLE, _RIGHT_DOUBLE = "\u0093\u201C\u00AB", "\u0094\u201D\u00BB"


def _latex_quotes(tok: str, left: bool) -> str:
    """PTB3 quote normalisation: ` and `` open, ' and '' close."""
    tok = tok.replace("&apos;", "`" if left else "'").replace("'", "`" if left else "'")
    tok = tok.replace("&quot;", "``" if left else "''").replace('"', "``" if left else "''")
    for chars, out in ((_LEFT_SINGLE, "`"), (_RIGHT_SINGLE, "'"), (_LEFT_DOUBLE, "``"), (_RIGHT_DOUBLE, "''")):
        for c in chars:
            tok = tok.replace(c, out)
    return tok


def _amp(tok: str) -> str:
    return regex.sub("(?i)&amp;", "&", tok)


def _soft(tok: str) -> str:
    return tok.replace("\u00AD", "") or "-"


_ACTIONS: dict[str, Callable[[str], str]] = {
    "keep": lambda t: t,
    "soft": _soft,
    "nbsp": lambda t: t.replace(" ", "\u00A0"),
    "mdash": lambda t: "--",
    "amp": _amp,
    "left": lambda t: _latex_quotes(t, True),
    "right": lambda t: _latex_quotes(t, False),
    "fraction": lambda t: t.translate(_FRACTIONS),
    "currency": lambda t: t.translate(_CURRENCY),
    "phone": lambda t: t.replace(" ", "\u00A0").replace("(", "-LRB-").replace(")", "-RRB-"),
    "parens": lambda t: t.replace("(", "-LRB-").replace(")", "-RRB-"),
    "lt": lambda t: "<",
    "gt": lambda t: ">",
    "hyphens": lambda t: "--" if 3 <= len(t) <= 4 else t,
    "ellipsis": lambda t: "...",
}


def ptb_tokens(text: str) -> list[str]:
    """CoreNLP 3.4.1 PTBTokenizer tokens of one line (default options, original case, punctuation kept)."""
    line = str(text).translate(_LINE_BREAKS) + _SENTINEL
    rules = _rules()
    tokens: list[str] = []
    pos = 0
    while pos < len(line):
        best_len, best_tok, best_act = -1, "", ""
        for pattern, action in rules:
            m = pattern.match(line, pos)
            if m is not None and m.end() - pos > best_len:  # longest match; ties go to the earlier rule
                best_len, best_tok, best_act = m.end() - pos, m.group("t"), action
        if best_act == "newline":
            break
        advance = len(best_tok)
        if best_act in ("back2", "back3"):  # cannot -> can + not, gonna -> gon + na, 'tis -> 't + is
            advance -= int(best_act[-1])
            tokens.append(best_tok[:advance])
        elif best_act == "acronym":  # "U.S. The": "U.S." and "." again; "I. The": "I" then "."
            advance = 1 if len(best_tok) == 2 else advance - 1
            tokens.append(best_tok[:1] if len(best_tok) == 2 else best_tok)
        elif best_act == "again1":  # abbreviation at a sentence end: "Inc." then its period again
            advance -= 1
            tokens.append(best_tok)
        elif best_act.startswith("-"):
            tokens.append(best_act)
        elif best_act != "skip":
            tokens.append(_ACTIONS[best_act](best_tok))
        pos += max(advance, 1)
    return tokens


def ptb_tokenize(text: str) -> str:
    """pycocoevalcap's caption tokenisation: PTB tokens, lower-cased, its punctuation list removed, space-joined."""
    return " ".join(t for t in (tok.lower() for tok in ptb_tokens(text)) if t not in PUNCTUATIONS)
