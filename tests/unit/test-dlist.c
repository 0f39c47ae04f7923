/* Unit tests of lib/dlist: printing as Cyrus prints, parsing as Cyrus's
 * dlist_parsesax() reads, and refusing bad input. */
#include "harness.h"

#include "buf.h"
#include "dlist.h"
#include "error.h"

/* Parse then print: must give back exactly the input. */
static bool roundtrip(const char *in, size_t len)
{
	struct dlist *dl = NULL;
	struct buf out = BUF_INIT;
	bool ok = dlist_parse(in, len, &dl, NULL) == 0;
	if (ok) {
		dlist_print(dl, &out);
		ok = out.len == len && !memcmp(out.s, in, len);
	}
	dlist_free(&dl);
	buf_release(&out);
	return ok;
}

static void test_print(void)
{
	struct dlist *dl = dlist_new_kvlist(NULL);
	struct buf out = BUF_INIT;
	test_begin("dlist: print atoms, quoted, literals, NIL, lists");
	dlist_add_atom(dl, "T", "e");
	dlist_add_atom(dl, "N", "user\x1f" "bob");
	dlist_add_atom(dl, "D", "example.com\x1duser\x1fzed");
	dlist_add_atom(dl, "E", "");
	dlist_add_atom(dl, "Q", "NIL");
	dlist_add_atom(dl, "X", NULL);
	dlist_add_atom(dl, "S", "a b");
	dlist_add_atom(dl, "L", "a\"b");
	dlist_add_map(dl, "Z", "a\0b", 3);
	dlist_add_num(dl, "V", 1795607557ULL);
	struct dlist *a = dlist_add_kvlist(dl, "A");
	dlist_add_atom(a, "bob", "lrs");
	dlist_add_list(dl, "H");
	dlist_print(dl, &out);
	test_assert_mem(out.s, out.len,
			"%(T e N user\x1f" "bob D \"example.com\x1duser\x1fzed\" "
			"E \"\" Q \"NIL\" X NIL S \"a b\" L {3+}\r\na\"b "
			"Z {3+}\r\na\0b V 1795607557 A %(bob lrs) H ())",
			strlen("%(T e N user\x1f" "bob D \"example.com\x1duser"
			       "\x1fzed\" E \"\" Q \"NIL\" X NIL S \"a b\" L "
			       "{3+}\r\na\"b Z {3+}\r\na") + 1 +
				strlen("b V 1795607557 A %(bob lrs) H ())"));
	dlist_free(&dl);
	buf_reset(&out);
	/* 1024 bytes: too long for an atom or a quoted string. */
	char big[1025];
	memset(big, 'x', 1024);
	big[1024] = '\0';
	dl = dlist_new_list(NULL);
	dlist_add_atom(dl, NULL, big);
	dlist_print(dl, &out);
	test_assert(!strncmp(out.s, "({1024+}\r\nxxx", 13));
	dlist_free(&dl);
	buf_release(&out);
	test_end();
}

static void test_parse(void)
{
	static const char rec[] =
		"%(T e I v28ylkblohjpeapaqfkgo2nb P default V 1795607557 C 1 "
		"F 2 M 1795607556 A %(bob lrswipkxtecdan cyrus lrswipkxtecda) "
		"H (%(N user\x1f" "bob\x1fSub M 1 T ed)))";
	struct dlist *dl = NULL;
	test_begin("dlist: parse real records, round trip");
	test_assert(dlist_parse(rec, strlen(rec), &dl, NULL) == 0);
	test_assert_str(dlist_get_string(dl, "P"), "default");
	test_assert_str(dlist_get_string(dlist_get(dl, "A"), "cyrus"),
			"lrswipkxtecda");
	struct dlist *h = dlist_get(dl, "H");
	test_assert(h && h->type == DLIST_LIST && h->head &&
		    h->head->type == DLIST_KVLIST);
	test_assert_str(dlist_get_string(h->head, "T"), "ed");
	dlist_free(&dl);
	test_assert(roundtrip(rec, strlen(rec)));
	test_assert(roundtrip("%(N \"example.com\x1duser\x1fzed\")", 27));
	test_assert(roundtrip("%(X {3+}\r\na\0b Y ())", 19));
	test_assert(roundtrip("()", 2));
	/* Literal without '+', quoted with backslash: read, printed
	 * Cyrus's way. */
	test_assert(dlist_parse("%(K {2}\r\nab)", 12, &dl, NULL) == 0);
	test_assert_str(dlist_get_string(dl, "K"), "ab");
	dlist_free(&dl);
	test_assert(dlist_parse("%(K \"a\\\"b\" N NIL)", 17, &dl, NULL) == 0);
	test_assert_str(dlist_get_string(dl, "K"), "a\"b");
	test_assert(dlist_get(dl, "N")->type == DLIST_NIL);
	dlist_free(&dl);
	test_end();
}

static void test_bad(void)
{
	static const char *const bad[] = {
		"",		       /* empty */
		"%(T e",	       /* truncated */
		"%(T e I",	       /* truncated after key */
		"%(T \"abc)",	       /* unterminated quote */
		"%(T {5+}\r\nab)",     /* literal cut short */
		"%(T {5+}\r\nabcde",   /* literal at the very end */
		"%(T {x}\r\nab)",      /* bad literal size */
		"%(T {99999999999999999999}\r\nab)", /* oversized literal */
		"% (T e)",	       /* space after % */
		"%[T e]",	       /* garbage */
		"%(T e))",	       /* trailing bytes */
		"%(T e) ",	       /* trailing space */
		"%(T e  I x)",	       /* double space */
		"%(NIL e)",	       /* NIL key */
		"(a b",		       /* unterminated list */
		"%(T e)%(T e)",        /* two values */
	};
	test_begin("dlist: truncated, garbage, oversized input is refused");
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
		struct dlist *dl = NULL;
		struct error err = ERROR_INIT;
		test_assert_idx(dlist_parse(bad[i], strlen(bad[i]), &dl,
					    &err) < 0,
				i);
		test_assert_idx(err.kind == ERR_DATA && err.msg[0], i);
		test_assert_idx(dl == NULL, i);
	}
	/* Nesting deeper than DLIST_MAX_DEPTH. */
	struct buf deep = BUF_INIT;
	for (int i = 0; i < 100; i++)
		buf_adds(&deep, "(");
	for (int i = 0; i < 100; i++)
		buf_adds(&deep, ")");
	struct dlist *dl = NULL;
	test_assert(dlist_parse(deep.s, deep.len, &dl, NULL) < 0);
	buf_release(&deep);
	/* Every prefix of a good record fails cleanly. */
	static const char rec[] = "%(T e A %(bob lrs) H (%(N a M 1)) Z {2+}\r\nab)";
	for (size_t n = 0; n < sizeof(rec) - 1; n++) {
		test_assert_idx(dlist_parse(rec, n, &dl, NULL) < 0, n);
		dlist_free(&dl);
	}
	test_assert(dlist_parse(rec, sizeof(rec) - 1, &dl, NULL) == 0);
	dlist_free(&dl);
	test_end();
}

int main(void)
{
	static void (*const tests[])(void) = { test_print, test_parse,
					       test_bad, NULL };
	return test_run(tests);
}
