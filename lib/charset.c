/* charset.c: RFC 2047/2231 decoding and content hashing (see charset.h). */
#include "compat.h"
#include "charset.h"

#include <ctype.h>
#include <iconv.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <strings.h>

#include "buf.h"
#include "xmalloc.h"

/* Cyrus 3.6.1 lib/charset/aliases.txt: alias -> canonical name. */
static const struct {
	const char *name, *canon;
} aliases[] = {
	{ "utf8", "utf-8" },
	{ "utf7", "utf-7" },
	{ "unicode-1-1-utf-8", "utf-8" },
	{ "unicode-1-1-utf-7", "utf-7" },
	{ "imap-utf-7", "IMAP-mailbox-name" },
	{ "ascii", "us-ascii" },
	{ "ANSI_X3.4-1968", "us-ascii" },
	{ "usascii", "us-ascii" },
	{ "iso-8859-1", "windows-1252" },
	{ "ISO_8859_1", "windows-1252" },
	{ "ISO_8859-1", "windows-1252" },
	{ "ISO_8859", "windows-1252" },
	{ "ISO-8859", "windows-1252" },
	{ "8859_1", "windows-1252" },
	{ "iso--8859-1", "windows-1252" },
	{ "so-8859-1", "windows-1252" },
	{ "en_GB", "windows-1252" },
	{ "auto", "windows-1252" },
	{ "unknown", "windows-1252" },
	{ "unknown-8bit", "windows-1252" },
	{ "x-unknown", "windows-1252" },
	{ "x-user-defined", "windows-1252" },
	{ "x-europa", "windows-1252" },
	{ "none", "windows-1252" },
	{ "latin1", "windows-1252" },
	{ "ISO8859-1", "windows-1252" },
	{ "8859-1", "windows-1252" },
	{ "es-windows-1252", "windows-1252" },
	{ "DISPLAY", "windows-1252" },
	{ "Any", "windows-1252" },
	{ "x-mac-roman", "macintosh" },
	{ "mac", "macintosh" },
	{ "csmacintosh", "macintosh" },
	{ "646", "iso-8859-1" },
	{ "ISO646-US", "iso-8859-1" },
	{ "8859_2", "iso-8859-2" },
	{ "x-mac-turkish", "iso-8859-9" },
	{ "greek-ccitt", "iso-8859-7" },
	{ "iso-8859-8-i", "iso-8859-8" },
	{ "ISO8859_15_FDIS", "iso-8859-15" },
	{ "ISO8859-15", "iso-8859-15" },
	{ "tis-620", "iso-8859-11" },
	{ "x-mac-thai", "iso-8859-11" },
	{ "ASMO-708", "iso-8859-6" },
	{ "WIN-KOI8", "koi8-r" },
	{ "KOI8-R", "koi8-r" },
	{ "KOI8-U", "koi8-u" },
	{ "_iso-2022-jp$ESC", "iso-2022-jp" },
	{ "_iso-2022-jp", "iso-2022-jp" },
	{ "csISO2022JP", "iso-2022-jp" },
	{ "ks_c_5601", "ksc5601" },
	{ "1250", "windows-1250" },
	{ "cp1250", "windows-1250" },
	{ "win-1250", "windows-1250" },
	{ "1251", "windows-1251" },
	{ "cp1251", "windows-1251" },
	{ "win-1251", "windows-1251" },
	{ "1252", "windows-1252" },
	{ "cp1252", "windows-1252" },
	{ "cp-1252", "windows-1252" },
	{ "win-1252", "windows-1252" },
	{ "1254", "windows-1254" },
	{ "cp1254", "windows-1254" },
	{ "win-1254", "windows-1254" },
	{ "1255", "windows-1255" },
	{ "cp1255", "windows-1255" },
	{ "win-1255", "windows-1255" },
	{ "1256", "windows-1256" },
	{ "cp1256", "windows-1256" },
	{ "win-1256", "windows-1256" },
	{ "win1256", "windows-1256" },
	{ "1257", "windows-1257" },
	{ "cp1257", "windows-1257" },
	{ "win-1257", "windows-1257" },
	{ "1258", "windows-1258" },
	{ "cp1258", "windows-1258" },
	{ "win-1258", "windows-1258" },
	{ "cp850", "windows-850" },
	{ "CP850", "windows-850" },
	{ "cp-850", "windows-850" },
	{ "CP-850", "windows-850" },
	{ "dos-latin1", "windows-850" },
	{ "msdos-latin1", "windows-850" },
	{ "cp932", "windows-31j" },
	{ "CP932", "windows-31j" },
	{ "cp-932", "windows-31j" },
	{ "CP-932", "windows-31j" },
	{ "win-31j", "windows-31j" },
	{ "Shift_JIS", "windows-31j" },
	{ "shift_jis", "windows-31j" },
	{ "SHIFT_JIS", "windows-31j" },
	{ "cp936", "windows-936" },
	{ "CP936", "windows-936" },
	{ "cp-936", "windows-936" },
	{ "CP-936", "windows-936" },
	{ "win-936", "windows-936" },
	{ "238", "windows-1250" },
	{ "136", "big5" },
	{ "gbk", "windows-936" },
	{ "GBK", "windows-936" },
	{ "x-gbk", "windows-936" },
	{ "gb2312", "windows-936" },
};

/* Canonical names iconv spells differently. */
static const char *iconv_name(const char *canon)
{
	if (!strcasecmp(canon, "windows-850"))
		return "CP850";
	if (!strcasecmp(canon, "ksc5601"))
		return "EUC-KR";
	if (!strcasecmp(canon, "IMAP-mailbox-name"))
		return "UTF-7";
	return canon;
}

/* The canonical name of a known charset (static or name), NULL if unknown. */
static const char *canon_name(const char *name)
{
	if (!name || !*name)
		return NULL;
	for (size_t k = 0; k < ARRAY_SIZE(aliases); k++)
		if (!strcasecmp(name, aliases[k].name))
			return aliases[k].canon;
	for (size_t k = 0; k < ARRAY_SIZE(aliases); k++)
		if (!strcasecmp(name, aliases[k].canon))
			return aliases[k].canon;
	if (!strcasecmp(name, "us-ascii") || !strcasecmp(name, "utf-8"))
		return name;
	iconv_t cd = iconv_open("UTF-8", name);
	if (cd == (iconv_t)-1)
		return NULL;
	iconv_close(cd);
	return name;
}

bool charset_known(const char *name)
{
	return canon_name(name) != NULL;
}

#define U_REPLACEMENT 0xfffd

static void put_utf8(struct buf *out, uint32_t c)
{
	if ((c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		c = U_REPLACEMENT;
	if (c > 0xffff) {
		buf_addch(out, 0xf0 + ((c >> 18) & 0x07));
		buf_addch(out, 0x80 + ((c >> 12) & 0x3f));
		buf_addch(out, 0x80 + ((c >> 6) & 0x3f));
		buf_addch(out, 0x80 + (c & 0x3f));
	} else if (c > 0x7ff) {
		buf_addch(out, 0xe0 + ((c >> 12) & 0x0f));
		buf_addch(out, 0x80 + ((c >> 6) & 0x3f));
		buf_addch(out, 0x80 + (c & 0x3f));
	} else if (c > 0x7f) {
		buf_addch(out, 0xc0 + ((c >> 6) & 0x1f));
		buf_addch(out, 0x80 + (c & 0x3f));
	} else {
		buf_addch(out, (int)c);
	}
}

/* us-ascii as Cyrus's table has it: NUL maps to nothing, 8-bit to U+FFFD. */
static void ascii_to_utf8(const char *s, size_t n, struct buf *out)
{
	for (size_t k = 0; k < n; k++) {
		unsigned char c = (unsigned char)s[k];
		if (c >= 0x80)
			put_utf8(out, U_REPLACEMENT);
		else if (c)
			buf_addch(out, c);
	}
}

/*
 * UTF-8 validation with Cyrus's recovery: a broken sequence gives one
 * U+FFFD and decoding goes on with the byte that broke it; an unfinished
 * sequence at the end vanishes.
 */
static void utf8_to_utf8(const unsigned char *s, size_t n, struct buf *out)
{
	uint32_t cp = 0;
	int left = 0;
	for (size_t k = 0; k < n; k++) {
		unsigned c = s[k];
		if ((c & 0xf8) == 0xf0) {
			if (left)
				put_utf8(out, U_REPLACEMENT);
			if (c >= 0xf5) {
				put_utf8(out, U_REPLACEMENT);
				left = 0;
				cp = 0;
				continue;
			}
			left = 3;
			cp = c & 0x07;
		} else if ((c & 0xf0) == 0xe0) {
			if (left)
				put_utf8(out, U_REPLACEMENT);
			left = 2;
			cp = c & 0x0f;
		} else if ((c & 0xe0) == 0xc0) {
			if (left)
				put_utf8(out, U_REPLACEMENT);
			if (c == 0xc0 || c == 0xc1) {
				put_utf8(out, U_REPLACEMENT);
				left = 0;
				cp = 0;
				continue;
			}
			left = 1;
			cp = c & 0x1f;
		} else if ((c & 0xc0) == 0x80) {
			if (left > 0) {
				cp = (cp << 6) + (c & 0x3f);
				if (!--left) {
					put_utf8(out, cp);
					cp = 0;
				}
			} else {
				put_utf8(out, U_REPLACEMENT);
				cp = 0;
			}
		} else if (c >= 0xf8) {
			put_utf8(out, U_REPLACEMENT);
			left = 0;
			cp = 0;
		} else {
			if (left)
				put_utf8(out, U_REPLACEMENT);
			if (c) /* the unicode NUL is not emitted */
				buf_addch(out, (int)c);
			left = 0;
			cp = 0;
		}
	}
}

static void iconv_to_utf8(const char *canon, const char *s, size_t n,
			  struct buf *out)
{
	iconv_t cd = iconv_open("UTF-8", iconv_name(canon));
	if (cd == (iconv_t)-1) {
		put_utf8(out, U_REPLACEMENT);
		return;
	}
	char tmp[1024];
	char *in = (char *)s;
	size_t inleft = n;
	while (inleft > 0) {
		char *o = tmp;
		size_t oleft = sizeof(tmp);
		size_t r = iconv(cd, &in, &inleft, &o, &oleft);
		int e = errno;
		buf_add(out, tmp, sizeof(tmp) - oleft);
		if (r == (size_t)-1) {
			if (e == E2BIG)
				continue;
			/* EILSEQ or EINVAL: one replacement, skip a byte. */
			put_utf8(out, U_REPLACEMENT);
			in++;
			inleft--;
			iconv(cd, NULL, NULL, NULL, NULL);
		}
	}
	char *o = tmp;
	size_t oleft = sizeof(tmp);
	iconv(cd, NULL, NULL, &o, &oleft);
	buf_add(out, tmp, sizeof(tmp) - oleft);
	iconv_close(cd);
	/* The NUL character never reaches Cyrus's output buffers. */
	size_t w = 0;
	for (size_t k = 0; k < out->len; k++)
		if (out->s[k])
			out->s[w++] = out->s[k];
	buf_setlen(out, w);
}

static void to_utf8(const char *canon, const char *s, size_t n,
		    struct buf *out)
{
	if (!strcasecmp(canon, "us-ascii"))
		ascii_to_utf8(s, n, out);
	else if (!strcasecmp(canon, "utf-8"))
		utf8_to_utf8((const unsigned char *)s, n, out);
	else {
		struct buf tmp = BUF_INIT;
		iconv_to_utf8(canon, s, n, &tmp);
		buf_addbuf(out, &tmp);
		buf_release(&tmp);
	}
}

/* ------------------------------------------------------------------ */
/* Decoders                                                            */

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Quoted-printable, line by line as Cyrus's qp decoder. */
struct qp {
	char line[1000];
	int len;
	bool header;
	void (*emit)(void *rock, const char *p, size_t n);
	void *rock;
};

static void qp_flushline(struct qp *q, bool endline)
{
	while (q->len && (q->line[q->len - 1] == ' ' ||
			  q->line[q->len - 1] == '\t'))
		q->len--;
	for (int i = 0; i < q->len; i++) {
		char c = q->line[i];
		if (c == '=') {
			if (i + 1 >= q->len) {
				endline = false; /* soft line break */
				break;
			}
			if (i + 2 < q->len) {
				int a = hexval((unsigned char)q->line[i + 1]);
				int b = hexval((unsigned char)q->line[i + 2]);
				if (a >= 0 && b >= 0) {
					char v = (char)((a << 4) + b);
					q->emit(q->rock, &v, 1);
					i += 2;
					continue;
				}
			}
			q->emit(q->rock, "=", 1);
		} else if (c == '_' && q->header) {
			q->emit(q->rock, " ", 1);
		} else {
			q->emit(q->rock, &c, 1);
		}
	}
	if (endline)
		q->emit(q->rock, "\r\n", 2);
	q->len = 0;
}

static void qp_feed(struct qp *q, const char *s, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		char c = s[k];
		if (c == '\r')
			continue;
		if (c == '\n') {
			qp_flushline(q, true);
			continue;
		}
		q->line[q->len++] = c;
		if (q->len > 998)
			qp_flushline(q, false);
	}
}

struct b64 {
	uint32_t cp;
	int left;
	bool url;
	void (*emit)(void *rock, const char *p, size_t n);
	void *rock;
};

static int b64val(int c, bool url)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == (url ? '-' : '+'))
		return 62;
	if (c == (url ? '_' : '/'))
		return 63;
	if (c == '=')
		return 64;
	return -1;
}

/* b64val() as tables: -1 junk, 64 '=', else the 6-bit value. */
static signed char b64tab[2][256];

static void b64_tables(void)
{
	if (b64tab[0][0] == -1)
		return;
	for (int u = 0; u < 2; u++)
		for (int c = 0; c < 256; c++)
			b64tab[u][c] = (signed char)b64val(c, u == 1);
}

/*
 * Decodes in runs: the output goes to emit in blocks of up to 3 KiB, not
 * byte by byte (a digest update per byte was most of a reconstruct).
 */
static void b64_feed(struct b64 *d, const char *s, size_t n)
{
	char out[3072];
	size_t o = 0;
	const signed char *tab;

	b64_tables();
	tab = b64tab[d->url ? 1 : 0];
	for (size_t k = 0; k < n; k++) {
		/* Whole quanta of four clean characters: the common case. */
		while (d->left == 0 && k + 4 <= n && o <= sizeof(out) - 3) {
			int a0 = tab[(unsigned char)s[k]];
			int a1 = tab[(unsigned char)s[k + 1]];
			int a2 = tab[(unsigned char)s[k + 2]];
			int a3 = tab[(unsigned char)s[k + 3]];
			if ((a0 | a1 | a2 | a3) < 0 || a0 == 64 || a1 == 64 ||
			    a2 == 64 || a3 == 64)
				break;
			uint32_t v = (uint32_t)a0 << 18 | (uint32_t)a1 << 12 |
				     (uint32_t)a2 << 6 | (uint32_t)a3;
			out[o++] = (char)(v >> 16);
			out[o++] = (char)(v >> 8 & 0xff);
			out[o++] = (char)(v & 0xff);
			k += 4;
		}
		if (k >= n)
			break;
		int b = tab[(unsigned char)s[k]];
		if (b < 0)
			continue; /* whitespace and junk are skipped */
		if (b == 64) {
			d->cp = 0;
			d->left = 0;
			continue;
		}
		if (o > sizeof(out) - 1) {
			d->emit(d->rock, out, o);
			o = 0;
		}
		switch (d->left) {
		case 0:
			d->cp = (uint32_t)b;
			d->left = 3;
			break;
		case 3:
			out[o++] = (char)(((d->cp << 2) | ((uint32_t)b >> 4)) &
					  0xff);
			d->cp = (uint32_t)b;
			d->left = 2;
			break;
		case 2:
			out[o++] = (char)(((d->cp << 4) | ((uint32_t)b >> 2)) &
					  0xff);
			d->cp = (uint32_t)b;
			d->left = 1;
			break;
		default:
			out[o++] = (char)(((d->cp << 6) | (uint32_t)b) & 0xff);
			d->cp = 0;
			d->left = 0;
			break;
		}
	}
	if (o)
		d->emit(d->rock, out, o);
}

struct sha_rock {
	EVP_MD_CTX *ctx;
	size_t n;
};

static void sha_emit(void *rock, const char *p, size_t n)
{
	struct sha_rock *r = rock;
	EVP_DigestUpdate(r->ctx, p, n);
	r->n += n;
}

int charset_decode_sha1(const char *src, size_t len, int encoding,
			unsigned char sha1[20], size_t *decodedlen_r)
{
	struct sha_rock r;
	if (encoding == CHARSET_ENC_NONE) {
		SHA1((const unsigned char *)src, len, sha1);
		if (decodedlen_r)
			*decodedlen_r = len;
		return 0;
	}
	if (encoding != CHARSET_ENC_QP && encoding != CHARSET_ENC_BASE64 &&
	    encoding != CHARSET_ENC_BASE64URL)
		return -1;
	r.ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(r.ctx, EVP_sha1(), NULL);
	r.n = 0;
	if (encoding == CHARSET_ENC_QP) {
		struct qp *q = xzmalloc(sizeof(*q));
		q->emit = sha_emit;
		q->rock = &r;
		qp_feed(q, src, len);
		qp_flushline(q, false);
		free(q);
	} else {
		struct b64 d = { 0, 0, encoding == CHARSET_ENC_BASE64URL,
				 sha_emit, &r };
		b64_feed(&d, src, len);
	}
	EVP_DigestFinal_ex(r.ctx, sha1, NULL);
	EVP_MD_CTX_free(r.ctx);
	if (decodedlen_r)
		*decodedlen_r = r.n;
	return 0;
}

/* ------------------------------------------------------------------ */
/* RFC 2047                                                            */

static void buf_emit(void *rock, const char *p, size_t n)
{
	buf_add(rock, p, n);
}

/* Plain text between words: CRLF before whitespace is unfolded. */
static void add_plain(const char *s, size_t n, struct buf *out)
{
	struct buf tmp = BUF_INIT;
	for (size_t k = 0; k < n; k++) {
		if (s[k] == '\r' && k + 2 < n && s[k + 1] == '\n' &&
		    (s[k + 2] == ' ' || s[k + 2] == '\t')) {
			k++;
			continue;
		}
		buf_addch(&tmp, s[k]);
	}
	ascii_to_utf8(tmp.s, tmp.len, out);
	buf_release(&tmp);
}

char *charset_decode_mimeheader(const char *s)
{
	if (!s)
		return NULL;
	struct buf out = BUF_INIT;
	/* The run of adjacent words that share one decoder. */
	struct buf run = BUF_INIT;
	char *runcs = NULL;
	int runenc = -1;
	struct qp *q = xzmalloc(sizeof(*q));
	struct b64 d;
	bool eatspace = false;
	const char *start = s;

	q->header = true;
	q->emit = buf_emit;
	q->rock = &run;
	memset(&d, 0, sizeof(d));
	d.emit = buf_emit;
	d.rock = &run;

	while ((start = strchr(start, '=')) != NULL) {
		const char *p, *endcharset = NULL, *encoding, *end;
		start++;
		if (*start != '?')
			continue;
		for (p = start + 1; *p && *p != '=' && *p != '?'; p++)
			if (*p == '*' && !endcharset)
				endcharset = p;
		if (*p != '?') {
			start = p;
			continue;
		}
		encoding = p;
		if (!endcharset)
			endcharset = p;
		if ((encoding[1] != 'b' && encoding[1] != 'B' &&
		     encoding[1] != 'q' && encoding[1] != 'Q') ||
		    encoding[2] != '?') {
			start = p;
			continue;
		}
		for (p = encoding + 3; *p && *p != '?'; p++)
			if (*p == '=' && p[1] == '?' && p[2] != '=')
				break;
		if (*p != '?' || p[1] != '=') {
			start = p;
			continue;
		}
		end = p;

		if (eatspace) {
			for (p = s; p < start - 1 &&
				    isspace((unsigned char)*p); p++)
				;
			if (p < start - 1)
				eatspace = false;
		}
		if (!eatspace) {
			if (runcs) {
				to_utf8(runcs, run.s, run.len, &out);
				buf_reset(&run);
			}
			free(runcs);
			runcs = NULL;
			runenc = -1;
			add_plain(s, (size_t)(start - s - 1), &out);
		}

		start++;
		char *csname = xstrndup(start, (size_t)(endcharset - start));
		const char *cs = canon_name(csname);
		int enc = (encoding[1] == 'q' || encoding[1] == 'Q') ?
				  CHARSET_ENC_QP : CHARSET_ENC_BASE64;
		if (!cs) {
			if (runcs) {
				to_utf8(runcs, run.s, run.len, &out);
				buf_reset(&run);
			}
			put_utf8(&out, U_REPLACEMENT);
			free(runcs);
			runcs = NULL;
			runenc = -1;
		} else if (runcs && !strcasecmp(cs, runcs) && enc == runenc) {
			if (enc == CHARSET_ENC_QP) {
				qp_feed(q, encoding + 3,
					(size_t)(end - encoding - 3));
				qp_flushline(q, false);
			} else {
				b64_feed(&d, encoding + 3,
					 (size_t)(end - encoding - 3));
			}
		} else {
			if (runcs) {
				to_utf8(runcs, run.s, run.len, &out);
				buf_reset(&run);
			}
			q->len = 0;
			d.cp = 0;
			d.left = 0;
			free(runcs);
			runcs = xstrdup(cs);
			runenc = enc;
			if (enc == CHARSET_ENC_QP) {
				qp_feed(q, encoding + 3,
					(size_t)(end - encoding - 3));
				qp_flushline(q, false);
			} else {
				b64_feed(&d, encoding + 3,
					 (size_t)(end - encoding - 3));
			}
		}
		free(csname);
		s = start = end + 2;
		eatspace = true;
	}
	if (runcs)
		to_utf8(runcs, run.s, run.len, &out);
	free(runcs);
	if (*s)
		add_plain(s, strlen(s), &out);
	buf_release(&run);
	free(q);
	return buf_detach(&out, NULL);
}

/* ------------------------------------------------------------------ */
/* RFC 2231                                                            */

char *charset_decode_xvalue(const char *s)
{
	const char *q1 = strchr(s, '\'');
	if (!q1)
		return NULL;
	const char *q2 = strchr(q1 + 1, '\'');
	if (!q2)
		return NULL;
	char *csname = xstrndup(s, (size_t)(q1 - s));
	const char *cs = *csname ? canon_name(csname) : "us-ascii";
	struct buf raw = BUF_INIT, out = BUF_INIT;
	for (const char *p = q2 + 1; *p; p++) {
		if (*p == '%' && hexval((unsigned char)p[1]) >= 0 &&
		    hexval((unsigned char)p[2]) >= 0) {
			buf_addch(&raw, hexval((unsigned char)p[1]) * 16 +
						hexval((unsigned char)p[2]));
			p += 2;
		} else {
			buf_addch(&raw, *p);
		}
	}
	if (!cs) {
		free(csname);
		buf_release(&raw);
		return NULL;
	}
	to_utf8(cs, raw.s, raw.len, &out);
	free(csname);
	buf_release(&raw);
	return buf_detach(&out, NULL);
}
