#!/usr/bin/python3
"""Deterministic generator of varied RFC 5322 / MIME messages.

Used by tests/t/3200-reconstruct-lmtp.sh (a few hundred messages delivered
over LMTP) and bench/gen-store.sh (100,000+ messages written as Cyrus
message files).  The same --seed and --count always give the same bytes.

  gen-mail.py --count N [--seed S] [--start K] [--small] --out DIR
      writes DIR/K. .. DIR/(K+N-1). (Cyrus message file names), CRLF
  gen-mail.py --dirs FILE [--seed S]
      FILE has "COUNT DIR" lines: writes DIR/1. .. DIR/COUNT. for each, one
      stream of messages across all of them (bench/gen-store.sh)
  gen-mail.py --count N ... --list
      prints "index kind size" lines instead (for a look at the mix)

Kinds: plain ascii, 8-bit/quoted-printable text, multipart/alternative,
multipart/mixed with base64 attachments, message/rfc822 (with another
message/rfc822 inside), encoded words (B and Q, several charsets), long
folded headers, multipart/digest, multipart/related, multipart/signed,
text/calendar, and malformed ones (no closing boundary, no boundary
parameter, bad dates, unbalanced quotes and angle brackets, header lines
without a colon, broken encoded words, an empty body, 8-bit header bytes).
--small keeps every message under about 20 KB (for the tests).
"""
import argparse
import base64
import os
import random
import sys

WORDS = ("the quick brown fox jumps over lazy dog mail server index cache "
         "report meeting budget quarter release project plan review draft "
         "invoice schedule holiday team update notes question answer "
         "Grüße café naïve façade Ärger").split()
NAMES = ["Alice Adams", "Bob Brown", "Carol Clark", "Dave Doe",
         "Eve Evans", "Frank Fischer", "Gül Güneş", "Hans Müller",
         "Doe, John", "O'Brien, Pat"]
DOMAINS = ["example.org", "example.com", "mail.example.net", "EXAMPLE.DE"]
CHARSETS = ["utf-8", "iso-8859-1", "UTF-8", "windows-1252", "iso-8859-15"]


class Gen:
    def __init__(self, seed, small):
        self.r = random.Random(seed)
        self.small = small

    def words(self, n):
        return " ".join(self.r.choice(WORDS) for _ in range(n))

    def addr(self, enc=False):
        name = self.r.choice(NAMES)
        local = name.split()[0].lower().strip(",").replace("'", "")
        dom = self.r.choice(DOMAINS)
        if enc and any(ord(c) > 127 for c in name):
            b = base64.b64encode(name.encode()).decode()
            return "=?utf-8?b?%s?= <%s@%s>" % (b, local, dom)
        name = "".join(c if ord(c) < 128 else "?" for c in name)
        if "," in name:
            name = '"%s"' % name
        return "%s <%s@%s>" % (name, local, dom)

    def date(self, i):
        days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        mons = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                "Sep", "Oct", "Nov", "Dec"]
        tz = self.r.choice(["+0000", "-0700", "+0200", "+0530", "-1200"])
        return "%s, %d %s %d %02d:%02d:%02d %s" % (
            days[i % 7], 1 + i % 28, mons[i % 12], 2015 + i % 9,
            i % 24, (i * 7) % 60, (i * 13) % 60, tz)

    def text(self, lines):
        out = []
        for _ in range(lines):
            out.append(self.words(self.r.randint(3, 14)))
        return "\r\n".join(out) + "\r\n"

    def body_size(self):
        # Most mail is small; a tail of big attachments.
        x = self.r.random()
        if self.small:
            return self.r.randint(200, 12000)
        if x < 0.6:
            return self.r.randint(500, 8000)
        if x < 0.9:
            return self.r.randint(8000, 40000)
        if x < 0.985:
            return self.r.randint(40000, 250000)
        return self.r.randint(250000, 1500000)

    def b64(self, n):
        raw = self.r.randbytes(n)
        s = base64.b64encode(raw).decode()
        return "\r\n".join(s[i:i + 76] for i in range(0, len(s), 76)) + "\r\n"

    def headers(self, i, subject, extra=()):
        h = ["Return-Path: <%s>" % self.addr().split("<")[1].rstrip(">"),
             "Received: from mx%d.example.net (mx%d.example.net [192.0.2.%d])"
             "\r\n\tby mail.example.org with ESMTPS id %08x\r\n\tfor "
             "<user@example.org>; %s" % (i % 9, i % 9, i % 250, i * 2654435761
                                        % 2**32, self.date(i)),
             "From: %s" % self.addr(self.r.random() < 0.3),
             "To: %s" % ", ".join(self.addr() for _ in
                                  range(self.r.randint(1, 3))),
             "Subject: %s" % subject,
             "Date: %s" % self.date(i),
             "Message-ID: <gen.%d.%x@example.org>" % (i, i * 40503)]
        if self.r.random() < 0.3:
            h.append("Cc: %s" % self.addr())
        if self.r.random() < 0.3:
            h.append("In-Reply-To: <gen.%d.%x@example.org>" %
                     (i - 1, (i - 1) * 40503))
        h.extend(extra)
        return "\r\n".join(h) + "\r\n"

    # Kinds -------------------------------------------------------------
    def k_plain(self, i):
        n = self.body_size()
        body = self.text(max(1, n // 60))
        return (self.headers(i, self.words(5)) +
                "MIME-Version: 1.0\r\nContent-Type: text/plain; "
                "charset=us-ascii\r\n\r\n" + body)

    def k_qp(self, i):
        cs = self.r.choice(CHARSETS)
        body = self.text(self.r.randint(3, 40)).replace("ü", "=FC").replace(
            "é", "=E9").replace("ß", "=DF")
        body = "".join(c if ord(c) < 128 else "=3F" for c in body)
        return (self.headers(i, "=?%s?Q?Gr=FC=DFe_%s?=" %
                             (cs, self.words(2).replace(" ", "_"))) +
                "MIME-Version: 1.0\r\nContent-Type: text/plain; "
                "charset=\"%s\"\r\nContent-Transfer-Encoding: "
                "quoted-printable\r\n\r\n%s" % (cs, body))

    def k_alt(self, i):
        t = self.text(self.r.randint(3, 30))
        return (self.headers(i, "=?UTF-8?B?%s?=" % base64.b64encode(
            ("Bericht für " + self.words(3)).encode()).decode()) +
            "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; "
            "boundary=\"alt-%d\"\r\n\r\n--alt-%d\r\nContent-Type: text/plain;"
            " charset=utf-8\r\n\r\n%s--alt-%d\r\nContent-Type: text/html; "
            "charset=utf-8\r\n\r\n<html><body><p>%s</p></body></html>\r\n"
            "--alt-%d--\r\n" % (i, i, t, i, t.replace("\r\n", "<br>"), i))

    def k_attach(self, i):
        parts = []
        for k in range(self.r.randint(1, 3)):
            ty = self.r.choice(["application/pdf", "image/jpeg",
                                "application/octet-stream",
                                "application/vnd.ms-excel"])
            fn = self.r.choice(["report", "photo", "data", "Bücher"]) + \
                "-%d.%s" % (k, ty.split("/")[1][:4])
            if any(ord(c) > 127 for c in fn):
                disp = "attachment; filename*=UTF-8''B%C3%BCcher-" + \
                    "%d.bin" % k
            else:
                disp = 'attachment; filename="%s"' % fn
            parts.append("Content-Type: %s; name=\"%s\"\r\n"
                         "Content-Disposition: %s\r\n"
                         "Content-Transfer-Encoding: base64\r\n\r\n%s" %
                         (ty, fn.encode("ascii", "replace").decode(), disp,
                          self.b64(self.body_size() * 3 // 4)))
        b = "mix-%d-%x" % (i, self.r.getrandbits(32))
        out = (self.headers(i, "report " + self.words(3)) +
               "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; "
               "boundary=\"%s\"\r\n\r\nThis is a multi-part message in MIME "
               "format.\r\n--%s\r\nContent-Type: text/plain; charset=utf-8\r\n"
               "\r\n%s" % (b, b, self.text(self.r.randint(2, 10))))
        for p in parts:
            out += "--%s\r\n%s" % (b, p)
        return out + "--%s--\r\n" % b

    def k_rfc822(self, i):
        inner2 = ("From: deepest@example.com\r\nSubject: deepest %d\r\n"
                  "Date: %s\r\n\r\n%s" % (i, self.date(i + 3),
                                           self.text(3)))
        inner = ("From: %s\r\nTo: %s\r\nSubject: =?iso-8859-1?q?inner_caf=E9?="
                 "\r\nDate: %s\r\nMessage-ID: <inner.%d@example.com>\r\n"
                 "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; "
                 "boundary=deep%d\r\n\r\n--deep%d\r\nContent-Type: text/plain"
                 "\r\n\r\n%s--deep%d\r\nContent-Type: message/rfc822\r\n\r\n"
                 "%s--deep%d--\r\n" % (self.addr(), self.addr(),
                                       self.date(i + 1), i, i, i,
                                       self.text(4), i, inner2, i))
        return (self.headers(i, "Fwd: " + self.words(4)) +
                "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; "
                "boundary=\"outer%d\"\r\n\r\n--outer%d\r\nContent-Type: "
                "text/plain\r\n\r\nForwarded.\r\n--outer%d\r\nContent-Type: "
                "message/rfc822\r\nContent-Disposition: attachment; "
                "filename=\"fwd.eml\"\r\n\r\n%s--outer%d--\r\n" %
                (i, i, i, inner, i))

    def k_folded(self, i):
        refs = " ".join("<ref.%d.%d@example.org>" % (i, k)
                        for k in range(self.r.randint(5, 40)))
        refs = refs.replace("> <", ">\r\n <")
        tos = ",\r\n\t".join(self.addr() for _ in range(self.r.randint(4, 25)))
        subj = "=?utf-8?q?%s?=\r\n =?utf-8?b?%s?=\r\n %s" % (
            self.words(6).replace(" ", "_"),
            base64.b64encode(self.words(5).encode()).decode(),
            self.words(12))
        return (self.headers(i, subj, ["References: " + refs,
                                       "Cc: " + tos,
                                       "X-Long: " + "x" * 1200,
                                       "Thread-Topic: " + self.words(30)]) +
                "MIME-Version: 1.0\r\nContent-Type: text/plain;\r\n"
                "\tcharset=\"utf-8\";\r\n\tformat=flowed\r\n\r\n" +
                self.text(self.r.randint(2, 20)))

    def k_digest(self, i):
        out = (self.headers(i, "digest " + self.words(2)) +
               "Content-Type: multipart/digest; boundary=dig%d\r\n\r\n" % i)
        for k in range(self.r.randint(2, 5)):
            out += ("--dig%d\r\n\r\nFrom: d%d@example.org\r\nSubject: item %d"
                    "\r\n\r\n%s" % (i, k, k, self.text(2)))
        return out + "--dig%d--\r\n" % i

    def k_related(self, i):
        return (self.headers(i, "newsletter " + self.words(2)) +
                "MIME-Version: 1.0\r\nContent-Type: multipart/related; "
                "type=\"text/html\"; boundary=rel%d\r\n\r\n--rel%d\r\n"
                "Content-Type: text/html; charset=utf-8\r\nContent-Language: "
                "en, de\r\n\r\n<img src=\"cid:img%d@x\">\r\n--rel%d\r\n"
                "Content-Type: image/png\r\nContent-ID: <img%d@x>\r\n"
                "Content-Transfer-Encoding: base64\r\nContent-Location: "
                "http://example.com/a.png\r\n\r\n%s--rel%d--\r\n" %
                (i, i, i, i, i, self.b64(self.r.randint(100, 3000)), i))

    def k_signed(self, i):
        return (self.headers(i, "signed " + self.words(2)) +
                "MIME-Version: 1.0\r\nContent-Type: multipart/signed; "
                "micalg=pgp-sha256; protocol=\"application/pgp-signature\"; "
                "boundary=\"sig%d\"\r\n\r\n--sig%d\r\nContent-Type: text/plain"
                "\r\n\r\n%s--sig%d\r\nContent-Type: application/pgp-signature;"
                " name=\"signature.asc\"\r\nContent-Description: OpenPGP "
                "digital signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\n%s"
                "-----END PGP SIGNATURE-----\r\n--sig%d--\r\n" %
                (i, i, self.text(3), i, self.b64(200), i))

    def k_calendar(self, i):
        return (self.headers(i, "Invitation: " + self.words(3)) +
                "MIME-Version: 1.0\r\nContent-Type: text/calendar; "
                "method=REQUEST; charset=UTF-8\r\n\r\nBEGIN:VCALENDAR\r\n"
                "VERSION:2.0\r\nBEGIN:VEVENT\r\nUID:%d@example.org\r\n"
                "SUMMARY:%s\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n" %
                (i, self.words(4)))

    def k_malformed(self, i):
        v = i % 8
        if v == 0:   # no closing boundary
            return (self.headers(i, "unclosed") +
                    "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; "
                    "boundary=\"nc%d\"\r\n\r\n--nc%d\r\nContent-Type: "
                    "text/plain\r\n\r\nfirst\r\n--nc%d\r\nContent-Type: "
                    "text/plain; charset=x-unknown\r\nContent-Transfer-"
                    "Encoding: x-uuencode\r\n\r\nno end\r\n" % (i, i, i))
        if v == 1:   # multipart without boundary
            return (self.headers(i, "no boundary") +
                    "Content-Type: multipart/mixed\r\n\r\n--x\r\ntext\r\n")
        if v == 2:   # bad date, broken encoded words, unbalanced quotes
            return ("From: \"unbalanced <broken@example.org>\r\n"
                    "To: <no-close@example.org, =?bogus?x?abc?=\r\n"
                    "Subject: =?utf-8?q?broken?=nospace =?utf-8?q?trail=\r\n"
                    "Date: yesterday at noon\r\nMessage-ID: no-brackets-%d\r\n"
                    "\r\n%s" % (i, self.text(2)))
        if v == 3:   # a header line without a colon, then more headers
            return ("From: x@example.org\r\nthis line has no colon\r\n"
                    "Subject: after a bad line %d\r\n\r\nbody\r\n" % i)
        if v == 4:   # no body at all, no blank line
            return "Subject: no body %d\r\nFrom: y@example.org\r\n" % i
        if v == 5:   # 8-bit header bytes (lmtpd munges or keeps them)
            return ("From: eight@example.org\r\nSubject: 8-bit Grüße %d é\r\n"
                    "Comment: café\r\n\r\nbody é\r\n" % i)
        if v == 6:   # nested multiparts five deep, odd parameters
            out = self.headers(i, "deep nest")
            out += "MIME-Version: 1.0\r\n"
            body = "Content-Type: text/plain; charset=\"us-ascii\"; " \
                   "foo*0=\"part one\"; foo*1=\" two\"\r\n\r\nleaf\r\n"
            for d in range(5):
                b = "n%d-%d" % (i, d)
                body = ("Content-Type: multipart/mixed; boundary=%s\r\n\r\n"
                        "--%s\r\n%s--%s--\r\n" % (b, b, body, b))
            return out + body
        # duplicate headers, empty subject, Content-Type with bad params
        return ("From: a@example.org\r\nFrom: b@example.org\r\nSubject:\r\n"
                "To: group:;, list: a@b.c, d@e.f;\r\nContent-Type: text/plain; "
                "charset=\"utf-8; name=unterminated\r\n\r\n%s" % self.text(2))

    KINDS = [("plain", 30), ("qp", 8), ("alt", 14), ("attach", 18),
             ("rfc822", 5), ("folded", 6), ("digest", 2), ("related", 4),
             ("signed", 3), ("calendar", 2), ("malformed", 8)]

    def message(self, i):
        kinds = [k for k, w in self.KINDS for _ in range(w)]
        k = self.r.choice(kinds)
        return k, getattr(self, "k_" + k)(i)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int)
    ap.add_argument("--dirs")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=1)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    g = Gen(a.seed, a.small)
    if a.dirs:
        n = 0
        for line in open(a.dirs):
            count, d = line.rstrip("\n").split(" ", 1)
            for uid in range(1, int(count) + 1):
                n += 1
                with open(os.path.join(d, "%d." % uid), "wb") as f:
                    f.write(g.message(n)[1].encode("utf-8"))
        return 0
    for n in range(a.start, a.start + a.count):
        kind, msg = g.message(n)
        data = msg.encode("utf-8")
        if a.list:
            print(n, kind, len(data))
            continue
        with open(os.path.join(a.out, "%d." % n), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    sys.exit(main())
