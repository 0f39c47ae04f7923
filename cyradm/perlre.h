/*
 * perlre.h: a small backtracking matcher with Perl's semantics (leftmost,
 * greedy or lazy quantifiers tried in Perl's order, last iteration wins a
 * capture), for the few fixed patterns with which the Perl cyradm picks
 * server responses apart. Matching them the same way is what makes our
 * output byte-identical on odd input too.
 *
 * Syntax: literals, \s \S \d \D \w \W and escaped punctuation, ., [...]
 * classes with ranges and ^, ( ) (?: ), |, * + ? {n} {n,} {n,m} and their
 * lazy forms with ?, ^ and $ (before a final newline too).
 */
#ifndef CYRADM_PERLRE_H
#define CYRADM_PERLRE_H

#include <stdbool.h>
#include <stddef.h>

#define PERLRE_MAXCAP 10

struct perlre;

struct perlre_match {
	size_t start, end;                    /* of the whole match */
	long cap_start[PERLRE_MAXCAP];        /* -1: group did not take part */
	long cap_end[PERLRE_MAXCAP];
};

/* Compiles pattern; the patterns are ours, so a bad one is a BUG(). */
struct perlre *perlre_compile(const char *pattern);
void perlre_free(struct perlre **re);

/*
 * Finds the leftmost match in s[from..len). Returns true and fills m.
 * Gives up (false) on absurd backtracking rather than hang.
 */
bool perlre_search(const struct perlre *re, const char *s, size_t len,
		   size_t from, struct perlre_match *m);

/* Capture n as a malloc'd string ("" if it did not take part). */
char *perlre_cap(const struct perlre_match *m, const char *s, int n);

#endif
