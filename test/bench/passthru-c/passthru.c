/*
 * passthru.c: the exec floor of the CNI benchmark, a benchmark peer and never shipped. It does
 * what test/bench/passthru does (print prevResult on ADD, nothing on DEL, a version on VERSION)
 * as a static C program, so `make bench` can show what one plugin execution costs on this
 * machine without any language runtime: the part of a chained plugin's cost no Go plugin can
 * remove. `make bench` builds it with the system C compiler (cc -O2 -static) when there is one.
 */
#define _GNU_SOURCE /* memmem */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_all(const char *p, size_t n) {
	while (n > 0) {
		ssize_t w = write(1, p, n);
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* object returns the JSON object following key (strings and escapes respected), or NULL. */
static const char *object(const char *in, size_t n, const char *key, size_t *len) {
	const char *k = memmem(in, n, key, strlen(key));
	if (k == NULL)
		return NULL;
	const char *end = in + n, *start = memchr(k, '{', (size_t)(end - k));
	if (start == NULL)
		return NULL;
	int depth = 0, str = 0;
	for (const char *p = start; p < end; p++) {
		char c = *p;
		if (str && c == '\\')
			p++;
		else if (str)
			str = c != '"';
		else if (c == '"')
			str = 1;
		else if (c == '{')
			depth++;
		else if (c == '}' && --depth == 0) {
			*len = (size_t)(p - start + 1);
			return start;
		}
	}
	return NULL;
}

int main(void) {
	size_t cap = 1 << 16, n = 0;
	char *in = malloc(cap);
	if (in == NULL)
		return 1;
	for (;;) {
		if (n == cap) {
			char *bigger = realloc(in, cap *= 2);
			if (bigger == NULL)
				return 1;
			in = bigger;
		}
		ssize_t r = read(0, in + n, cap - n);
		if (r < 0)
			return 1;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	const char *cmd = getenv("CNI_COMMAND");
	if (cmd != NULL && strcmp(cmd, "ADD") == 0) {
		size_t len;
		const char *prev = object(in, n, "\"prevResult\":", &len);
		return prev == NULL || write_all(prev, len) != 0;
	}
	if (cmd != NULL && strcmp(cmd, "VERSION") == 0) {
		static const char v[] = "{\"cniVersion\":\"1.1.0\",\"supportedVersions\":[\"0.4.0\",\"1.0.0\",\"1.1.0\"]}";
		return write_all(v, sizeof v - 1) != 0;
	}
	return 0;
}
