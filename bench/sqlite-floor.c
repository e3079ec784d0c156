// The least it costs to store one flow's record in SQLite: one prepared INSERT of an events
// row, with honeygate's schema, pragmas and batch size, from C with nothing around it.
// bench/run.mjs builds it and runs it on the proxy's core ("recording floor", bench/README.md):
// whatever records each flow in SQLite pays at least this per flow, in any language.
//
//   sqlite-floor DB SCHEMA_FILE ROW_FILE ROWS ROWS_PER_TRANSACTION
//
// SCHEMA_FILE: the store's pragmas, then its schema (SQL).
// ROW_FILE: the INSERT on its first line, then one line per parameter: "text V", "int N",
// "null", "blob HEX", or "id" / "time" / "port" for the values that change per flow (a new
// time-ordered id, the time in ms, a source port). Prints one JSON line.
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum Kind { TEXT, INT, NUL, BLOB, ID, TIME, PORT };
struct Param {
  enum Kind kind;
  char *text;
  long long n;
  unsigned char *blob;
  int len;
};

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) { perror(path); exit(2); }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  rewind(f);
  char *s = malloc(n + 1);
  if (fread(s, 1, n, f) != (size_t)n) { perror(path); exit(2); }
  s[n] = 0;
  fclose(f);
  return s;
}

static void check(sqlite3 *db, int rc, const char *what) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE) return;
  fprintf(stderr, "%s: %s\n", what, sqlite3_errmsg(db));
  exit(1);
}

static double micros(struct timeval t) { return t.tv_sec * 1e6 + t.tv_usec; }

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: sqlite-floor DB SCHEMA_FILE ROW_FILE ROWS ROWS_PER_TRANSACTION\n");
    return 2;
  }
  long rows = atol(argv[4]), batch = atol(argv[5]);
  char *schema = slurp(argv[2]);
  char *spec = slurp(argv[3]);
  char *insert = strtok(spec, "\n");
  struct Param params[64];
  int np = 0;
  for (char *line = strtok(NULL, "\n"); line && np < 64; line = strtok(NULL, "\n")) {
    struct Param *p = &params[np++];
    memset(p, 0, sizeof *p);
    if (!strncmp(line, "text ", 5)) p->kind = TEXT, p->text = line + 5;
    else if (!strncmp(line, "int ", 4)) p->kind = INT, p->n = atoll(line + 4);
    else if (!strcmp(line, "null")) p->kind = NUL;
    else if (!strncmp(line, "blob ", 5)) {
      p->kind = BLOB;
      p->len = strlen(line + 5) / 2;
      p->blob = malloc(p->len + 1);
      for (int i = 0; i < p->len; i++) sscanf(line + 5 + 2 * i, "%2hhx", &p->blob[i]);
    } else if (!strcmp(line, "id")) p->kind = ID;
    else if (!strcmp(line, "time")) p->kind = TIME;
    else if (!strcmp(line, "port")) p->kind = PORT;
    else { fprintf(stderr, "row file: unknown line: %s\n", line); return 2; }
  }

  sqlite3 *db;
  check(db, sqlite3_open(argv[1], &db), "open");
  check(db, sqlite3_exec(db, schema, 0, 0, 0), "schema");
  sqlite3_stmt *st;
  check(db, sqlite3_prepare_v2(db, insert, -1, &st, 0), "prepare");
  if (sqlite3_bind_parameter_count(st) != np) {
    fprintf(stderr, "row file: %d values for %d parameters\n", np, sqlite3_bind_parameter_count(st));
    return 2;
  }

  // Ids as honeygate makes them: 12 hex digits of the time in ms, then 20 random ones.
  const long long t0 = 1790000000000LL;
  unsigned long long rnd = 88172645463325252ULL;
  char id[33];
  struct rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  for (long i = 0; i < rows; i++) {
    if (i % batch == 0) check(db, sqlite3_exec(db, "BEGIN", 0, 0, 0), "begin");
    long long now = t0 + i / 12;  // about 12,000 flows a second
    for (int k = 0; k < np; k++) {
      struct Param *p = &params[k];
      switch (p->kind) {
        case TEXT: sqlite3_bind_text(st, k + 1, p->text, -1, SQLITE_STATIC); break;
        case INT: sqlite3_bind_int64(st, k + 1, p->n); break;
        case NUL: sqlite3_bind_null(st, k + 1); break;
        case BLOB: sqlite3_bind_blob(st, k + 1, p->blob, p->len, SQLITE_STATIC); break;
        case TIME: sqlite3_bind_int64(st, k + 1, now); break;
        case PORT: sqlite3_bind_int(st, k + 1, 32768 + i % 28000); break;
        case ID:
          rnd ^= rnd << 13, rnd ^= rnd >> 7, rnd ^= rnd << 17;  // xorshift64
          snprintf(id, sizeof id, "%012llx%016llx%04x", now, rnd, (unsigned)(rnd >> 48));
          sqlite3_bind_text(st, k + 1, id, 32, SQLITE_TRANSIENT);
          break;
      }
    }
    check(db, sqlite3_step(st), "insert");
    sqlite3_reset(st);
    if (i % batch == batch - 1 || i == rows - 1) check(db, sqlite3_exec(db, "COMMIT", 0, 0, 0), "commit");
  }
  getrusage(RUSAGE_SELF, &after);
  sqlite3_finalize(st);
  sqlite3_close(db);
  printf("{\"sqlite\":\"%s\",\"rows\":%ld,\"rowsPerTransaction\":%ld,\"userUs\":%.3f,\"sysUs\":%.3f}\n",
         sqlite3_libversion(), rows, batch,
         (micros(after.ru_utime) - micros(before.ru_utime)) / rows,
         (micros(after.ru_stime) - micros(before.ru_stime)) / rows);
  return 0;
}
