
/*
 * ngx_http_registry_module: online garbage collection, a maintenance job
 * (see the header) run in a thread while nginx serves pushes and pulls,
 * on a store distribution may share.
 *
 * Mark.  Per repository: the tags' current links, and every revision
 * unless delete_untagged (then only revisions whose link is younger than
 * the grace: a push in flight writes children before their index), are
 * roots.  A live manifest's config and layers are live, an index's
 * children are live manifests, and a revision whose subject is a live
 * manifest is live (its referrers: found from the revisions' own
 * subjects, which distribution's stores have too, where the module's
 * _ngx_referrers index may be missing).  Each distinct manifest is read
 * and parsed once (a hash set of every digest met, with what a manifest
 * references).  A manifest whose bytes are present but do not parse
 * makes the whole run remove nothing: what it keeps alive is unknown.
 *
 * With delete_untagged, a revision neither live nor young goes (its link
 * and its referrers index entry) right after its repository is marked.
 *
 * Pulls.  The pull-through cache's eviction marks the store with this
 * mark too (store_gc_pulls(), store_evict.c): the local repositories as
 * above, their layer links holding their blobs whatever their age; the
 * mirrored repositories' revisions and layer links are no roots, but
 * answered, with their times and what their manifests reference, for
 * the eviction to choose from.  Nothing is swept.
 *
 * Tombstones.  Blobs moved aside earlier (<v2>/_ngx_tombstones/<alg>/<hex>,
 * see store_paths.c) come back when live, and are doomed when older than
 * the second grace, which is the grace again, counted from when they were
 * moved aside (the time of the record of the run that moved them, see
 * gc_records_read()): deleted at the end of the run, after their layer
 * links (see Links).  So a blob goes in two runs: this run's tombstones
 * are only deleted by a later run.
 *
 * Blobs.  blobs/<alg>/<xx>/<hex>/data: a marked blob costs nothing, an
 * unmarked one one stat; older than the grace, it is renamed to its
 * tombstone, checked again (a refresh may have come between the stat and
 * the rename: it moves back), and listed in the run's record.  Its
 * directory, empty, goes in the next run.
 *
 * Refresh.  Every store operation that references a blob again refreshes
 * its time and its link's, and brings a tombstoned blob back
 * (store_blob_refresh(): an upload's commit, a mount, a layer link, a
 * manifest put naming it), so that a push in flight or started during
 * a run never loses a blob: either the refresh comes before the rename
 * (the check after it moves the blob back) or after it (the refresh
 * renames it back).  A manifest put refreshes what it names once more
 * after its revision link is written (store_manifest.c): a run that
 * marked the repository before that link may have judged a blob the
 * put's first refresh had protected only for the grace, and this second
 * one, which any later mark sees as live anyway, is what its 201 rests
 * on.  A blob pull is no reference and brings nothing back.
 * Distribution writing to the store refreshes nothing: its pushes are
 * safe only when they take less than the grace.
 *
 * A layer link younger than the grace keeps its blob too: that is a push
 * in flight, which links its blobs before it puts its manifest.
 *
 * Links.  A repository's layer link to a blob no live manifest of that
 * repository references goes when older than the grace, but a link to a
 * tombstoned (or young, unreferenced) blob stays as long as the bytes do,
 * so that a manifest put naming it can bring it back.  The run that
 * dooms the bytes removes their links first, syncs the directories that
 * lost them, and deletes the bytes last: a run cut short anywhere (a
 * kill, a power cut) leaves links to tombstones, which the next run
 * removes, never a link to bytes that are gone.  A link found young again
 * keeps its doomed blob: a push is bringing it back.
 *
 * What is left to chance, a few system calls apart each: a refresh
 * landing between the last check of a link's (or revision's) time and
 * its unlink (a manifest put writes a layer link gc removed again after
 * its revision link, so it loses one only if all of it, check to hold,
 * lands there); a commit of the very blob being moved aside whose publish
 * recreates the blob's directory just before gc removes it (the commit
 * fails, the client retries).
 */


#include "ngx_http_registry_store.h"

#include <jansson.h>
#include <pthread.h>


#define NGX_HTTP_REGISTRY_GC_LISTED        1000
#define NGX_HTTP_REGISTRY_GC_MANIFEST_MAX  (16 * 1024 * 1024)
#define NGX_HTTP_REGISTRY_GC_RECORD_BUF    (64 * 1024)
#define NGX_HTTP_REGISTRY_GC_SET_MIN       1024
#define NGX_HTTP_REGISTRY_GC_SLACK         1          /* seconds */
#define NGX_HTTP_REGISTRY_GC_PARTS         4          /* threads, at most */

#define NGX_HTTP_REGISTRY_GC_MARK        0
#define NGX_HTTP_REGISTRY_GC_TOMBSTONES  1
#define NGX_HTTP_REGISTRY_GC_BLOBS       2
#define NGX_HTTP_REGISTRY_GC_LINKS       3


typedef struct ngx_http_registry_gc_blob_s  ngx_http_registry_gc_blob_t;
typedef struct ngx_http_registry_gc_tomb_s  ngx_http_registry_gc_tomb_t;


typedef struct {
    ngx_http_registry_gc_blob_t   *blob;
    ngx_uint_t                     manifest;   /* an index's child */
} ngx_http_registry_gc_ref_t;


/* every digest a run meets, once: the marks and the manifests read */

struct ngx_http_registry_gc_blob_s {
    ngx_http_registry_digest_t     digest;
    ngx_http_registry_gc_ref_t    *refs;       /* a manifest's, once read */
    ngx_uint_t                     nrefs;
    ngx_http_registry_gc_blob_t   *subject;    /* NULL: none */
    ngx_http_registry_gc_tomb_t   *doomed;     /* its old tombstone, to go */
    ngx_uint_t                     live_in;    /* repositories' stamps, */
    ngx_uint_t                     used_in;    /* for gc_repo_t's sets */
    ngx_uint_t                     cached;     /* pulls: 1 + its index in
                                                  the answer, 0: none */
    unsigned                       marked:1;   /* live */
    unsigned                       kept:1;     /* unmarked, bytes stay */
    unsigned                       read:1;
    unsigned                       invalid:1;  /* bytes that do not parse */
};


/*
 * Open addressing, on the digest's own hex (see gc_set_slot()), each
 * slot with its record's hash: a probe reads a record only when the
 * hashes match, a resize none.
 */

typedef struct {
    uint64_t                       hash;
    ngx_http_registry_gc_blob_t   *blob;
} ngx_http_registry_gc_slot_t;


typedef struct {
    ngx_http_registry_gc_slot_t   *slots;
    ngx_uint_t                     mask;
    ngx_uint_t                     count;
    ngx_pool_t                    *pool;
} ngx_http_registry_gc_set_t;


typedef struct {
    ngx_http_registry_gc_blob_t   *blob;
    ngx_uint_t                     removable;  /* untagged and old */
} ngx_http_registry_gc_revision_t;


/* a layer link that may go; for the pulls, a mirrored repository's link */

typedef struct {
    ngx_str_t                      name;
    ngx_http_registry_gc_blob_t   *blob;
    uint64_t                       pulled;     /* pulls: its mtime, ns */
    ngx_uint_t                     revision;   /* pulls: not a layer's */
} ngx_http_registry_gc_link_t;


/* the candidates of one repository's _layers/<alg>, for the links phase */

typedef struct {
    ngx_http_registry_gc_link_t   *cand;
    ngx_uint_t                     n;
} ngx_http_registry_gc_group_t;


/* blobs/<alg>/<name>: a directory of blobs, for the sweep */

typedef struct {
    ngx_uint_t                     alg;
    ngx_str_t                      name;
} ngx_http_registry_gc_prefix_t;


/* _ngx_tombstones/<alg>/<name>: deleted after its links, when doomed */

struct ngx_http_registry_gc_tomb_s {
    ngx_uint_t                     alg;
    ngx_str_t                      name;
    off_t                          size;
    time_t                         moved;      /* its record's, 0: none */
    ngx_http_registry_gc_blob_t   *blob;       /* NULL: none met */
    ngx_uint_t                     doomed;
};


/*
 * A repository being marked.  Its two sets, the manifests live in it and
 * the configs and layers they use, are stamps in the blobs' records:
 * repositories are marked one after the other, each with a stamp of its
 * own (gc_is_live(), gc_is_used()).
 */

typedef struct {
    ngx_str_t                      name;
    ngx_str_t                      kept_name;  /* in gc's pool, once made */
    ngx_uint_t                     stamp;
    ngx_http_registry_op_t         op;         /* in the repository's pool */
    ngx_array_t                    stack;      /* of gc_blob_t *, to mark */
    ngx_array_t                    revisions;  /* of gc_revision_t */
    ngx_uint_t                     invalid;    /* a revision does not parse */
} ngx_http_registry_gc_repo_t;


typedef struct ngx_http_registry_gc_s  ngx_http_registry_gc_t;

typedef ngx_int_t (*ngx_http_registry_gc_part_pt)(ngx_http_registry_gc_t *gc,
    ngx_array_t *items);

/*
 * one entry of a repository's revisions/<alg> or _layers/<alg> (dir): its
 * digest, and its link's path beneath dir
 */
typedef ngx_int_t (*ngx_http_registry_gc_entry_pt)(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_dir_t *dir,
    ngx_http_registry_digest_t *digest, ngx_str_t *rel);

/*
 * A run, or a part of one: the mark, the sweeps and the links phase are
 * shared out among threads, each with a part of its own (see
 * gc_parallel()), which the run takes back in when it is done.
 */

struct ngx_http_registry_gc_s {
    ngx_http_registry_op_t        *op;
    ngx_http_registry_op_t         part_op;    /* a part's op */
    ngx_http_registry_gc_part_pt   part;       /* what a part's thread runs */
    ngx_array_t                   *items;
    ngx_atomic_t                  *cursor;     /* the next item to take */
    ngx_int_t                      rc;
    ngx_http_registry_job_t       *job;
    ngx_http_registry_progress_t  *progress;
    struct timespec                now;
    struct timespec                cutoff;     /* now less the grace */
    ngx_http_registry_gc_set_t     blobs;
    ngx_array_t                    links;      /* of gc_link_t: candidates */
    ngx_array_t                   *prefixes;   /* pulls: mirrored names' */
    ngx_array_t                    pulls;      /* of gc_link_t: their links */
    ngx_array_t                    tombstones; /* of gc_tomb_t, sorted */
    ngx_array_t                    record;     /* of u_char: its lines */
    ngx_array_t                    old_records; /* of ngx_str_t: to go */
    ngx_http_registry_dir_t        tombs[2];   /* the sweep's, by alg */
    ngx_uint_t                     invalid;    /* remove nothing */

    json_t                        *report;
    json_t                        *removed;    /* blobs deleted */
    json_t                        *tombstoned;
    json_t                        *restored;
    json_t                        *links_list;
    json_t                        *revisions_list;
    json_t                        *problems;

    uint64_t                       repositories;
    uint64_t                       manifests;
    uint64_t                       blobs_marked;
    uint64_t                       blobs_scanned;
    uint64_t                       blobs_tombstoned;
    uint64_t                       bytes_tombstoned;
    uint64_t                       blobs_restored;
    uint64_t                       blobs_removed;
    uint64_t                       bytes_freed;
    uint64_t                       links_removed;
    uint64_t                       revisions_removed;
    uint64_t                       problems_found;
};


static ngx_int_t ngx_http_registry_gc_init(ngx_http_registry_gc_t *gc);
static ngx_int_t ngx_http_registry_gc_mark(ngx_http_registry_gc_t *gc);
static ngx_int_t ngx_http_registry_gc_repository(ngx_http_registry_gc_t *gc,
    ngx_str_t *name);
#define ngx_http_registry_gc_is_live(repo, b)  ((b)->live_in == (repo)->stamp)
#define ngx_http_registry_gc_is_used(repo, b)  ((b)->used_in == (repo)->stamp)

static ngx_int_t ngx_http_registry_gc_tags(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo);
static ngx_int_t ngx_http_registry_gc_entries(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_uint_t layers,
    ngx_http_registry_gc_entry_pt each);
static ngx_int_t ngx_http_registry_gc_entry(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_dir_t *dir,
    ngx_uint_t alg, ngx_str_t *hex, ngx_http_registry_gc_entry_pt each);
static ngx_int_t ngx_http_registry_gc_revision(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_dir_t *dir,
    ngx_http_registry_digest_t *digest, ngx_str_t *rel);
static ngx_int_t ngx_http_registry_gc_live(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo);
static ngx_int_t ngx_http_registry_gc_drain(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo);
static ngx_int_t ngx_http_registry_gc_read(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_blob_t *b);
static ngx_int_t ngx_http_registry_gc_parse(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_blob_t *b, ngx_http_registry_op_t *op,
    ngx_str_t *bytes);
static ngx_int_t ngx_http_registry_gc_untagged(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo);
static ngx_int_t ngx_http_registry_gc_unrevision(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_gc_blob_t *b);
static ngx_int_t ngx_http_registry_gc_layer(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_dir_t *dir,
    ngx_http_registry_digest_t *digest, ngx_str_t *rel);
static ngx_int_t ngx_http_registry_gc_kept_name(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo);
static ngx_int_t ngx_http_registry_gc_pulled_revision(
    ngx_http_registry_gc_t *gc, ngx_http_registry_gc_repo_t *repo,
    ngx_http_registry_dir_t *dir, ngx_http_registry_digest_t *digest,
    ngx_str_t *rel);
static ngx_int_t ngx_http_registry_gc_pulled_layer(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_dir_t *dir,
    ngx_http_registry_digest_t *digest, ngx_str_t *rel);
static ngx_int_t ngx_http_registry_gc_pulled(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_dir_t *dir,
    ngx_http_registry_digest_t *digest, ngx_str_t *rel, ngx_uint_t revision);
static ngx_int_t ngx_http_registry_gc_answer(ngx_http_registry_gc_t *gc,
    ngx_array_t *cached);
static ngx_int_t ngx_http_registry_gc_answer_refs(ngx_http_registry_gc_t *gc,
    ngx_http_registry_cached_t *c);
static ngx_int_t ngx_http_registry_gc_tombstones(ngx_http_registry_gc_t *gc);
static int ngx_libc_cdecl ngx_http_registry_gc_tomb_cmp(const void *one,
    const void *two);
static ngx_http_registry_gc_tomb_t *ngx_http_registry_gc_tomb_find(
    ngx_http_registry_gc_t *gc, ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_gc_records_read(ngx_http_registry_gc_t *gc);
static ngx_int_t ngx_http_registry_gc_record_read(ngx_http_registry_gc_t *gc,
    ngx_str_t *name);
static ngx_int_t ngx_http_registry_gc_record_lines(ngx_http_registry_gc_t *gc,
    ngx_fd_t fd, time_t moved);
static ngx_int_t ngx_http_registry_gc_record_digest(ngx_http_registry_gc_t *gc,
    ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_gc_record_add(ngx_http_registry_gc_t *gc,
    u_char *lines, size_t len);
static void ngx_http_registry_gc_records_end(ngx_http_registry_gc_t *gc,
    ngx_int_t rc);
static ngx_int_t ngx_http_registry_gc_tombs_part(ngx_http_registry_gc_t *gc,
    ngx_array_t *tombs);
static ngx_int_t ngx_http_registry_gc_tombstone_sweep(
    ngx_http_registry_gc_t *gc, ngx_pool_t *pool,
    ngx_http_registry_gc_tomb_t *tomb);
static ngx_int_t ngx_http_registry_gc_blobs(ngx_http_registry_gc_t *gc);
static ngx_int_t ngx_http_registry_gc_blob_prefix(ngx_http_registry_gc_t *gc,
    ngx_uint_t alg, ngx_str_t *prefix);
static ngx_int_t ngx_http_registry_gc_blob_sweep(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_http_registry_dir_t *dir, ngx_str_t *hex,
    ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_gc_open_tombs(ngx_http_registry_gc_t *gc);
static ngx_int_t ngx_http_registry_gc_empty_dir(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_http_registry_dir_t *prefix,
    ngx_str_t *hex);
static ngx_int_t ngx_http_registry_gc_bury(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_http_registry_dir_t *prefix,
    ngx_str_t *hex, ngx_str_t *rel, ngx_http_registry_digest_t *digest,
    off_t size);
static void ngx_http_registry_gc_replaced(ngx_http_registry_gc_t *gc,
    ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_gc_buried(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_http_registry_dir_t *prefix,
    ngx_str_t *hex, ngx_str_t *rel, ngx_http_registry_digest_t *digest);
static ngx_int_t ngx_http_registry_gc_unlink_links(ngx_http_registry_gc_t *gc);
static ngx_uint_t ngx_http_registry_gc_link_group(
    ngx_http_registry_gc_link_t *cand, ngx_uint_t n);
static ngx_int_t ngx_http_registry_gc_unlink_part(ngx_http_registry_gc_t *gc,
    ngx_array_t *groups);
static ngx_int_t ngx_http_registry_gc_unlink_group(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_link_t *cand, ngx_uint_t n);
static ngx_int_t ngx_http_registry_gc_unlink_link(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_http_registry_dir_t *layers,
    ngx_http_registry_gc_link_t *cand);
static ngx_int_t ngx_http_registry_gc_delete_part(ngx_http_registry_gc_t *gc,
    ngx_array_t *tombs);
static ngx_int_t ngx_http_registry_gc_young_in(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_http_registry_dir_t *dir, ngx_str_t *rel,
    off_t *size);
static ngx_int_t ngx_http_registry_gc_age(ngx_http_registry_gc_t *gc,
    ngx_file_info_t *fi, off_t *size);
static ngx_int_t ngx_http_registry_gc_young(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_str_t *path, off_t *size);
static ngx_int_t ngx_http_registry_gc_mark_part(ngx_http_registry_gc_t *gc,
    ngx_array_t *names);
static ngx_int_t ngx_http_registry_gc_sweep_part(ngx_http_registry_gc_t *gc,
    ngx_array_t *prefixes);
static ngx_uint_t ngx_http_registry_gc_take(ngx_http_registry_gc_t *gc,
    ngx_array_t *items, ngx_uint_t *i);
static ngx_int_t ngx_http_registry_gc_parallel(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_part_pt part, ngx_array_t *items,
    ngx_uint_t own_sets);
static void *ngx_http_registry_gc_thread(void *data);
static ngx_http_registry_gc_t *ngx_http_registry_gc_fork(
    ngx_http_registry_gc_t *gc, ngx_uint_t own_sets);
static ngx_int_t ngx_http_registry_gc_join(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_t *part);
static ngx_int_t ngx_http_registry_gc_join_marks(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_t *part);
static ngx_int_t ngx_http_registry_gc_join_refs(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_blob_t *ours, ngx_http_registry_gc_blob_t *theirs);
static ngx_int_t ngx_http_registry_gc_join_links(ngx_http_registry_gc_t *gc,
    ngx_array_t *ours, ngx_array_t *theirs);
static void ngx_http_registry_gc_join_list(json_t *ours, json_t *theirs);
static void ngx_http_registry_gc_drop(ngx_http_registry_gc_t *part);
static ngx_uint_t ngx_http_registry_gc_count_marked(
    ngx_http_registry_gc_t *gc);
static ngx_int_t ngx_http_registry_gc_cancelled(ngx_http_registry_gc_t *gc);
static void ngx_http_registry_gc_phase(ngx_http_registry_gc_t *gc,
    ngx_uint_t phase, ngx_uint_t total);
static void ngx_http_registry_gc_list(ngx_http_registry_gc_t *gc,
    json_t *list, ngx_str_t *repo, ngx_str_t *digest);
static void ngx_http_registry_gc_problem(ngx_http_registry_gc_t *gc,
    const char *what, ngx_str_t *repo, ngx_str_t *digest);
static ngx_int_t ngx_http_registry_gc_report(ngx_http_registry_gc_t *gc,
    ngx_int_t rc);

static ngx_http_registry_gc_blob_t *ngx_http_registry_gc_blob(
    ngx_http_registry_gc_t *gc, ngx_http_registry_digest_t *digest,
    ngx_uint_t create);
static ngx_int_t ngx_http_registry_gc_set_init(ngx_http_registry_gc_set_t *set,
    ngx_pool_t *pool);
static uint64_t ngx_http_registry_gc_hash(ngx_str_t *digest);
static ngx_http_registry_gc_slot_t *ngx_http_registry_gc_set_slot(
    ngx_http_registry_gc_set_t *set, uint64_t hash, ngx_str_t *digest);
static ngx_int_t ngx_http_registry_gc_set_grow(
    ngx_http_registry_gc_set_t *set);


static const char  *ngx_http_registry_gc_phases[] = {
    "mark", "tombstones", "blobs", "links", NULL
};



const char **
ngx_http_registry_store_gc_phases(ngx_http_registry_job_t *job)
{
    return ngx_http_registry_gc_phases;
}

/*
 * The job: job->grace, dry_run (report what would go, change nothing),
 * delete_untagged.  NGX_DECLINED: cancelled, with what was done so far
 * in the report.
 */

ngx_int_t
ngx_http_registry_store_gc(ngx_http_registry_op_t *op,
    ngx_http_registry_job_t *job)
{
    ngx_int_t               rc;
    ngx_http_registry_gc_t  gc;

    ngx_memzero(&gc, sizeof(ngx_http_registry_gc_t));

    gc.tombs[0].fd = -1;
    gc.tombs[1].fd = -1;

    gc.op = op;
    gc.job = job;
    gc.progress = job->progress;
    gc.report = job->report;

    rc = ngx_http_registry_gc_init(&gc);

    if (rc == NGX_OK) {
        rc = ngx_http_registry_gc_mark(&gc);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_registry_gc_tombstones(&gc);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_registry_gc_blobs(&gc);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_registry_gc_unlink_links(&gc);
    }

    ngx_http_registry_gc_records_end(&gc, rc);

    ngx_http_registry_dir_close(&gc.tombs[0]);
    ngx_http_registry_dir_close(&gc.tombs[1]);

    return ngx_http_registry_gc_report(&gc, rc);
}


static ngx_int_t
ngx_http_registry_gc_init(ngx_http_registry_gc_t *gc)
{
    if (clock_gettime(CLOCK_REALTIME, &gc->now) == -1) {
        return ngx_http_registry_op_syserr(gc->op, ngx_errno);
    }

    /*
     * A second more: file times come from the kernel's coarse clock, a
     * refresh made just after this may carry an earlier time than now.
     */

    gc->cutoff = gc->now;
    gc->cutoff.tv_sec -= gc->job->grace + NGX_HTTP_REGISTRY_GC_SLACK;

    gc->removed = json_array();
    gc->tombstoned = json_array();
    gc->restored = json_array();
    gc->links_list = json_array();
    gc->revisions_list = json_array();
    gc->problems = json_array();

    if (gc->report == NULL
        || gc->removed == NULL || gc->tombstoned == NULL
        || gc->restored == NULL || gc->links_list == NULL
        || gc->revisions_list == NULL || gc->problems == NULL
        || ngx_array_init(&gc->links, gc->op->pool, 16,
                          sizeof(ngx_http_registry_gc_link_t))
           != NGX_OK
        || ngx_array_init(&gc->pulls, gc->op->pool, 16,
                          sizeof(ngx_http_registry_gc_link_t))
           != NGX_OK
        || ngx_array_init(&gc->record, gc->op->pool, 4096, 1) != NGX_OK
        || ngx_array_init(&gc->old_records, gc->op->pool, 4,
                          sizeof(ngx_str_t))
           != NGX_OK
        || ngx_http_registry_gc_set_init(&gc->blobs, gc->op->pool) != NGX_OK)
    {
        return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
    }

    return NGX_OK;
}


/* ---- mark ---- */

static ngx_int_t
ngx_http_registry_gc_mark(ngx_http_registry_gc_t *gc)
{
    ngx_int_t    rc;
    ngx_array_t  names;

    if (ngx_array_init(&names, gc->op->pool, 64, sizeof(ngx_str_t))
        != NGX_OK)
    {
        return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
    }

    if (ngx_http_registry_store_list_repositories(gc->op, &names) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_registry_gc_phase(gc, NGX_HTTP_REGISTRY_GC_MARK, names.nelts);

    rc = ngx_http_registry_gc_parallel(gc, ngx_http_registry_gc_mark_part,
                                       &names, 1);

    gc->blobs_marked = ngx_http_registry_gc_count_marked(gc);

    return rc;
}


/* the repositories of names this part takes */

static ngx_int_t
ngx_http_registry_gc_mark_part(ngx_http_registry_gc_t *gc,
    ngx_array_t *names)
{
    ngx_str_t   *name;
    ngx_uint_t   i;

    name = names->elts;

    while (ngx_http_registry_gc_take(gc, names, &i)) {
        if (ngx_http_registry_gc_cancelled(gc)) {
            return NGX_DECLINED;
        }

        /* a foreign directory is none of ours to judge */

        if (ngx_http_registry_valid_name(&name[i]) == NGX_OK) {
            if (ngx_http_registry_gc_repository(gc, &name[i]) != NGX_OK) {
                return NGX_ERROR;
            }

            gc->repositories++;
        }

        (void) ngx_atomic_fetch_add(&gc->progress->done, 1);
    }

    return NGX_OK;
}


/* one repository, in a pool of its own: what survives it is in gc's */

static ngx_int_t
ngx_http_registry_gc_repository(ngx_http_registry_gc_t *gc, ngx_str_t *name)
{
    ngx_int_t                    rc;
    ngx_pool_t                  *pool;
    ngx_http_registry_gc_repo_t  repo;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, gc->op->log);
    if (pool == NULL) {
        return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
    }

    ngx_memzero(&repo, sizeof(ngx_http_registry_gc_repo_t));

    repo.name = *name;
    repo.stamp = gc->repositories + 1;
    repo.op = *gc->op;
    repo.op.pool = pool;

    if (ngx_array_init(&repo.stack, pool, 64,
                          sizeof(ngx_http_registry_gc_blob_t *))
           != NGX_OK
        || ngx_array_init(&repo.revisions, pool, 64,
                          sizeof(ngx_http_registry_gc_revision_t))
           != NGX_OK)
    {
        ngx_destroy_pool(pool);
        return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
    }

    if (gc->prefixes && ngx_http_registry_name_under(gc->prefixes, name)) {
        rc = ngx_http_registry_gc_entries(gc, &repo, 0,
                                          ngx_http_registry_gc_pulled_revision);

        if (rc == NGX_OK) {
            rc = ngx_http_registry_gc_entries(gc, &repo, 1,
                                            ngx_http_registry_gc_pulled_layer);
        }

        goto done;
    }

    rc = ngx_http_registry_gc_tags(gc, &repo);

    if (rc == NGX_OK) {
        rc = ngx_http_registry_gc_entries(gc, &repo, 0,
                                          ngx_http_registry_gc_revision);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_registry_gc_live(gc, &repo);
    }

    if (rc == NGX_OK && gc->job->delete_untagged && !repo.invalid) {
        rc = ngx_http_registry_gc_untagged(gc, &repo);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_registry_gc_entries(gc, &repo, 1,
                                          ngx_http_registry_gc_layer);
    }

done:

    if (rc != NGX_OK) {
        gc->op->fault = repo.op.fault;
    }

    ngx_destroy_pool(pool);

    return rc;
}


/* each tag's current link: a root */

static ngx_int_t
ngx_http_registry_gc_tags(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo)
{
    ngx_int_t                     rc;
    ngx_str_t                     path, rel, *tag;
    ngx_uint_t                    i;
    ngx_array_t                   tags;
    ngx_http_registry_op_t       *op;
    ngx_http_registry_dir_t       dir;
    ngx_http_registry_digest_t    digest;
    ngx_http_registry_gc_blob_t  *b, **root;

    op = &repo->op;

    if (ngx_array_init(&tags, op->pool, 16, sizeof(ngx_str_t)) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (ngx_http_registry_path_tags(op, &path, &repo->name) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_dir_open(op, &path, &dir);
    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    rc = ngx_http_registry_dir_list(op, &dir, NGX_HTTP_REGISTRY_LIST_DIRS,
                                    &tags);
    tag = tags.elts;

    for (i = 0; rc == NGX_OK && i < tags.nelts; i++) {
        if (ngx_http_registry_path_in_tags(op, &rel, &tag[i]) != NGX_OK) {
            rc = NGX_ERROR;
            break;
        }

        rc = ngx_http_registry_dir_read_link(op, &dir, &rel, &digest);

        if (rc == NGX_DECLINED) {
            rc = NGX_OK;
            continue;
        }

        if (rc != NGX_OK) {
            ngx_http_registry_gc_problem(gc, "unreadable tag link",
                                         &repo->name, &tag[i]);
            gc->invalid = 1;
            rc = NGX_OK;
            continue;
        }

        b = ngx_http_registry_gc_blob(gc, &digest, 1);
        root = ngx_array_push(&repo->stack);

        if (b == NULL || root == NULL) {
            rc = ngx_http_registry_op_syserr(op, NGX_ENOMEM);
            break;
        }

        *root = b;
    }

    ngx_http_registry_dir_close(&dir);

    return rc;
}


/*
 * each() for every entry of the repository's revisions/<alg>, or its
 * _layers/<alg> (layers), of both algorithms
 */

static ngx_int_t
ngx_http_registry_gc_entries(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_uint_t layers,
    ngx_http_registry_gc_entry_pt each)
{
    ngx_int_t                 rc;
    ngx_str_t                 path, *hex;
    ngx_uint_t                alg, i;
    ngx_array_t               hexes;
    ngx_http_registry_op_t   *op;
    ngx_http_registry_dir_t   dir;

    op = &repo->op;

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        if (ngx_array_init(&hexes, op->pool, 64, sizeof(ngx_str_t)) != NGX_OK)
        {
            return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
        }

        rc = layers
             ? ngx_http_registry_path_layers(op, &path, &repo->name, alg)
             : ngx_http_registry_path_revisions(op, &path, &repo->name, alg);

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_dir_open(op, &path, &dir);
        if (rc == NGX_DECLINED) {
            continue;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_dir_list(op, &dir, NGX_HTTP_REGISTRY_LIST_DIRS,
                                        &hexes);
        hex = hexes.elts;

        for (i = 0; rc == NGX_OK && i < hexes.nelts; i++) {
            rc = ngx_http_registry_gc_entry(gc, repo, &dir, alg, &hex[i],
                                            each);
        }

        ngx_http_registry_dir_close(&dir);

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* <hex> in the listing of dir, as each() takes it; not a digest: none */

static ngx_int_t
ngx_http_registry_gc_entry(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_dir_t *dir,
    ngx_uint_t alg, ngx_str_t *hex, ngx_http_registry_gc_entry_pt each)
{
    ngx_int_t                   rc;
    ngx_str_t                   rel;
    ngx_http_registry_digest_t  digest;

    rc = ngx_http_registry_digest_of(repo->op.pool, alg, hex, &digest);

    if (rc != NGX_OK) {
        return (rc == NGX_ERROR)
               ? ngx_http_registry_op_syserr(&repo->op, NGX_ENOMEM) : NGX_OK;
    }

    if (ngx_http_registry_path_in_links(&repo->op, &rel, hex) != NGX_OK) {
        return NGX_ERROR;
    }

    return each(gc, repo, dir, &digest, &rel);
}


/*
 * One revision, read: a root too unless delete_untagged, and then still
 * when younger than the grace.  Bytes that do not parse keep the run
 * from removing anything.
 */

static ngx_int_t
ngx_http_registry_gc_revision(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_dir_t *dir,
    ngx_http_registry_digest_t *digest, ngx_str_t *rel)
{
    ngx_int_t                         rc;
    ngx_http_registry_op_t           *op;
    ngx_http_registry_gc_blob_t      *b, **root;
    ngx_http_registry_gc_revision_t  *rev;

    op = &repo->op;

    rc = ngx_http_registry_gc_young_in(gc, op, dir, rel, NULL);

    if (rc == NGX_DECLINED) {
        return NGX_OK;                        /* no link: no revision */
    }

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    b = ngx_http_registry_gc_blob(gc, digest, 1);
    rev = ngx_array_push(&repo->revisions);

    if (b == NULL || rev == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    rev->blob = b;
    rev->removable = gc->job->delete_untagged && rc == NGX_ABORT;

    if (ngx_http_registry_gc_read(gc, b) != NGX_OK) {
        return NGX_ERROR;
    }

    if (b->invalid) {
        repo->invalid = 1;
        gc->invalid = 1;
    }

    if (!rev->removable) {
        root = ngx_array_push(&repo->stack);
        if (root == NULL) {
            return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
        }

        *root = b;
    }

    return NGX_OK;
}


/* from the roots down, then the referrers of what is live, till no more */

static ngx_int_t
ngx_http_registry_gc_live(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo)
{
    ngx_uint_t                        i;
    ngx_http_registry_gc_blob_t     **next;
    ngx_http_registry_gc_revision_t  *rev;

    rev = repo->revisions.elts;

    while (repo->stack.nelts) {

        if (ngx_http_registry_gc_drain(gc, repo) != NGX_OK) {
            return NGX_ERROR;
        }

        for (i = 0; i < repo->revisions.nelts; i++) {
            if (rev[i].blob->subject
                && !ngx_http_registry_gc_is_live(repo, rev[i].blob)
                && ngx_http_registry_gc_is_live(repo, rev[i].blob->subject))
            {
                next = ngx_array_push(&repo->stack);
                if (next == NULL) {
                    return ngx_http_registry_op_syserr(&repo->op, NGX_ENOMEM);
                }

                *next = rev[i].blob;
            }
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_gc_drain(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo)
{
    ngx_uint_t                    i;
    ngx_http_registry_gc_ref_t   *ref;
    ngx_http_registry_gc_blob_t  *b, **stack, **next;

    while (repo->stack.nelts) {
        stack = repo->stack.elts;
        b = stack[--repo->stack.nelts];

        if (ngx_http_registry_gc_is_live(repo, b)) {
            continue;
        }

        b->live_in = repo->stamp;

        if (ngx_http_registry_gc_read(gc, b) != NGX_OK) {
            return ngx_http_registry_op_syserr(&repo->op, NGX_ENOMEM);
        }

        gc->invalid |= b->invalid;
        b->marked = 1;

        ref = b->refs;

        for (i = 0; i < b->nrefs; i++) {

            if (ref[i].manifest) {
                next = ngx_array_push(&repo->stack);
                if (next == NULL) {
                    return ngx_http_registry_op_syserr(&repo->op, NGX_ENOMEM);
                }

                *next = ref[i].blob;
                continue;
            }

            ref[i].blob->used_in = repo->stamp;

            ref[i].blob->marked = 1;
        }
    }

    return NGX_OK;
}


/*
 * A manifest's references, read once a run: its bytes, or its tombstone's
 * (a live manifest moved aside comes back in the tombstones phase).
 * Bytes missing are a problem that keeps nothing alive; bytes that do not
 * parse are b->invalid, and keep the run from removing anything once a
 * root of a local repository reaches them (gc_revision(), gc_drain()):
 * the pulls read the mirrored repositories' manifests too.
 */

static ngx_int_t
ngx_http_registry_gc_read(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_blob_t *b)
{
    ngx_int_t               rc;
    ngx_str_t               path, bytes;
    ngx_pool_t             *pool;
    ngx_http_registry_op_t  op;

    if (b->read) {
        return NGX_OK;
    }

    b->read = 1;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, gc->op->log);
    if (pool == NULL) {
        return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
    }

    op = *gc->op;
    op.pool = pool;

    rc = ngx_http_registry_path_blob(&op, &path, &b->digest);

    if (rc == NGX_OK) {
        rc = ngx_http_registry_file_read(&op, &path,
                                         NGX_HTTP_REGISTRY_GC_MANIFEST_MAX,
                                         &bytes);
    }

    if (rc == NGX_DECLINED) {
        rc = ngx_http_registry_path_tombstone(&op, &path, b->digest.alg,
                                              &b->digest);
        if (rc == NGX_OK) {
            rc = ngx_http_registry_file_read(&op, &path,
                                            NGX_HTTP_REGISTRY_GC_MANIFEST_MAX,
                                            &bytes);
        }
    }

    if (rc == NGX_OK) {
        gc->manifests++;
        rc = ngx_http_registry_gc_parse(gc, b, &op, &bytes);

        if (rc != NGX_OK) {
            (void) ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
        }

    } else if (rc == NGX_DECLINED) {
        ngx_http_registry_gc_problem(gc, "manifest bytes missing", NULL,
                                     &b->digest.text);
        rc = NGX_OK;

    } else if (op.fault.code != NGX_HTTP_REGISTRY_INTERNAL
               || op.fault.errnum != NGX_ENOMEM)
    {
        ngx_http_registry_gc_problem(gc, "unreadable manifest", NULL,
                                     &b->digest.text);
        b->invalid = 1;
        rc = NGX_OK;
    }

    ngx_destroy_pool(pool);

    return rc;
}


static ngx_int_t
ngx_http_registry_gc_parse(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_blob_t *b, ngx_http_registry_op_t *op,
    ngx_str_t *bytes)
{
    ngx_int_t                      rc;
    ngx_str_t                      none = ngx_null_string;
    ngx_uint_t                     i;
    const char                    *invalid;
    ngx_http_registry_ref_t       *ref;
    ngx_http_registry_manifest_t   m;

    ngx_memzero(&m, sizeof(ngx_http_registry_manifest_t));

    m.bytes = *bytes;
    m.digest = b->digest;

    /* the common shape without jansson's tree, anything else with it */

    rc = ngx_http_registry_manifest_scan(op->pool, &m);

    if (rc == NGX_DECLINED) {
        rc = ngx_http_registry_manifest_parse(op->pool, &m, &none, &invalid);
    }

    if (rc == NGX_DECLINED) {
        ngx_http_registry_gc_problem(gc, invalid, NULL, &b->digest.text);
        b->invalid = 1;
        return NGX_OK;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    b->nrefs = m.references->nelts;
    b->refs = ngx_palloc(gc->op->pool,
                         b->nrefs * sizeof(ngx_http_registry_gc_ref_t));
    if (b->refs == NULL) {
        return NGX_ERROR;
    }

    ref = m.references->elts;

    for (i = 0; i < b->nrefs; i++) {
        b->refs[i].manifest = ref[i].manifest;
        b->refs[i].blob = ngx_http_registry_gc_blob(gc, &ref[i].digest, 1);

        if (b->refs[i].blob == NULL) {
            return NGX_ERROR;
        }
    }

    if (m.descriptor.len) {
        b->subject = ngx_http_registry_gc_blob(gc, &m.subject, 1);

        if (b->subject == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* delete_untagged: the revisions not live and older than the grace */

static ngx_int_t
ngx_http_registry_gc_untagged(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo)
{
    ngx_int_t                         rc;
    ngx_str_t                         path;
    ngx_uint_t                        i, tracked, alg, lost[2];
    ngx_http_registry_op_t           *op;
    ngx_http_registry_gc_revision_t  *rev;

    op = &repo->op;
    rev = repo->revisions.elts;
    lost[0] = 0;
    lost[1] = 0;

    tracked = ngx_http_registry_store_referrers_tracked(op, &repo->name);

    for (i = 0; i < repo->revisions.nelts; i++) {
        if (!rev[i].removable
            || ngx_http_registry_gc_is_live(repo, rev[i].blob))
        {
            continue;
        }

        rc = ngx_http_registry_gc_unrevision(gc, repo, rev[i].blob);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        lost[rev[i].blob->digest.alg] += (rc == NGX_OK);
    }

    if ((lost[0] || lost[1]) && !gc->job->dry_run) {
        ngx_http_registry_links_changed(op);

        if (tracked) {
            ngx_http_registry_store_referrers_restamp(op, &repo->name);
        }
    }

    /*
     * synced: a later run may delete the bytes, and no power cut may
     * bring back a revision link to them
     */

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        if (lost[alg] && !gc->job->dry_run
            && (ngx_http_registry_path_revisions(op, &path, &repo->name, alg)
                != NGX_OK
                || ngx_http_registry_file_sync_dir(op, &path) == NGX_ERROR))
        {
            return NGX_ERROR;
        }
    }

    /* the revisions found young at the last moment, and what they keep */

    return ngx_http_registry_gc_live(gc, repo);
}


/*
 * The revision link and the referrers index entry, unless a push made the
 * link young again since it was listed: then it is live after all.
 * NGX_DECLINED: kept.
 */

static ngx_int_t
ngx_http_registry_gc_unrevision(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_gc_blob_t *b)
{
    ngx_int_t                     rc;
    ngx_str_t                     link;
    ngx_http_registry_op_t       *op;
    ngx_http_registry_gc_blob_t **root;

    op = &repo->op;

    if (ngx_http_registry_path_revision_link(op, &link, &repo->name,
                                             &b->digest)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!gc->job->dry_run) {
        rc = ngx_http_registry_gc_young(gc, op, &link, NULL);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_OK) {
            root = ngx_array_push(&repo->stack);
            if (root == NULL) {
                return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
            }

            *root = b;
            return NGX_DECLINED;
        }

        if (rc == NGX_DECLINED) {
            return NGX_DECLINED;              /* deleted meanwhile */
        }

        /* the mark parsed its bytes: an entry only if it has a subject */

        if ((b->subject
             && ngx_http_registry_store_referrers_unlink(op, &repo->name,
                                                         &b->subject->digest,
                                                         &b->digest)
                != NGX_OK)
            || ngx_http_registry_file_unlink(op, &link, 1) == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    gc->revisions_removed++;
    ngx_http_registry_gc_list(gc, gc->revisions_list, &repo->name,
                              &b->digest.text);

    return NGX_OK;
}


/*
 * One layer link, that no live manifest of the repository references: younger than the grace,
 * it keeps its blob (a push in flight links its blobs before it puts its
 * manifest; so does distribution's, which refreshes no blob's time);
 * older, it is a candidate, judged once the sweeps know whether its blob
 * stays (gc_unlink_links()).  For the pulls, a local repository's link
 * holds its blob, whatever its age.
 */

static ngx_int_t
ngx_http_registry_gc_layer(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_dir_t *dir,
    ngx_http_registry_digest_t *digest, ngx_str_t *rel)
{
    ngx_int_t                     rc;
    ngx_http_registry_op_t       *op;
    ngx_http_registry_gc_blob_t  *b;
    ngx_http_registry_gc_link_t  *cand;

    op = &repo->op;

    b = ngx_http_registry_gc_blob(gc, digest, 1);
    if (b == NULL) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    if (gc->prefixes == NULL && ngx_http_registry_gc_is_used(repo, b)) {
        return NGX_OK;
    }

    rc = ngx_http_registry_gc_young_in(gc, op, dir, rel, NULL);

    if (rc == NGX_ERROR) {
        return NGX_ERROR;
    }

    if (gc->prefixes) {
        b->marked |= (rc != NGX_DECLINED);
        return NGX_OK;
    }

    if (rc == NGX_OK) {
        b->marked = 1;                        /* a push in flight */
    }

    if (rc != NGX_ABORT) {
        return NGX_OK;
    }

    cand = ngx_array_push(&gc->links);

    if (cand == NULL || ngx_http_registry_gc_kept_name(gc, repo) != NGX_OK) {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    ngx_memzero(cand, sizeof(ngx_http_registry_gc_link_t));
    cand->name = repo->kept_name;
    cand->blob = b;

    return NGX_OK;
}


/* the repository's name in gc's pool, which outlives the repository's */

static ngx_int_t
ngx_http_registry_gc_kept_name(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo)
{
    if (repo->kept_name.data == NULL) {
        repo->kept_name.data = ngx_pstrdup(gc->op->pool, &repo->name);
        repo->kept_name.len = repo->name.len;
    }

    return (repo->kept_name.data == NULL) ? NGX_ERROR : NGX_OK;
}


/* ---- the pulls: the mark for the pull-through cache's eviction ---- */

static ngx_int_t
ngx_http_registry_gc_pulled_revision(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_dir_t *dir,
    ngx_http_registry_digest_t *digest, ngx_str_t *rel)
{
    return ngx_http_registry_gc_pulled(gc, repo, dir, digest, rel, 1);
}


static ngx_int_t
ngx_http_registry_gc_pulled_layer(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_dir_t *dir,
    ngx_http_registry_digest_t *digest, ngx_str_t *rel)
{
    return ngx_http_registry_gc_pulled(gc, repo, dir, digest, rel, 0);
}


/*
 * A mirrored repository's revision or layer link, with its time (the
 * cache flushes its pulls there), a revision's manifest read.  It marks
 * nothing: what the mirrored repositories hold is the eviction's to
 * judge.  Bytes that do not parse keep nothing but themselves, and stop
 * nothing: what eviction takes wrongly, the mirror fetches again.
 */

static ngx_int_t
ngx_http_registry_gc_pulled(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_repo_t *repo, ngx_http_registry_dir_t *dir,
    ngx_http_registry_digest_t *digest, ngx_str_t *rel, ngx_uint_t revision)
{
    ngx_int_t                     rc;
    ngx_file_info_t               fi;
    ngx_http_registry_op_t       *op;
    ngx_http_registry_gc_blob_t  *b;
    ngx_http_registry_gc_link_t  *link;

    op = &repo->op;

    rc = ngx_http_registry_dir_stat(op, dir, rel, &fi);

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    b = ngx_http_registry_gc_blob(gc, digest, 1);
    link = ngx_array_push(&gc->pulls);

    if (b == NULL || link == NULL
        || ngx_http_registry_gc_kept_name(gc, repo) != NGX_OK)
    {
        return ngx_http_registry_op_syserr(op, NGX_ENOMEM);
    }

    link->name = repo->kept_name;
    link->blob = b;
    link->pulled = (uint64_t) fi.st_mtim.tv_sec * 1000000000
                   + fi.st_mtim.tv_nsec;
    link->revision = revision;

    return revision ? ngx_http_registry_gc_read(gc, b) : NGX_OK;
}


/*
 * The mark of the whole store for the pull-through cache's eviction
 * (store_evict.c): the local repositories' tags, revisions and layer
 * links hold what they hold, as a collection's mark finds it; the
 * mirrored repositories' (prefixes, ngx_str_t) revisions and layer links
 * are answered in cached (ngx_http_registry_cached_t), one a blob no
 * local repository holds, with their times and what their manifests
 * reference.  NGX_DECLINED: a local manifest or tag is unreadable, what
 * the local repositories hold is unknown, and nothing may go.
 */

ngx_int_t
ngx_http_registry_store_gc_pulls(ngx_http_registry_op_t *op,
    ngx_array_t *prefixes, ngx_array_t *cached)
{
    ngx_int_t                     rc;
    ngx_http_registry_gc_t        gc;
    ngx_http_registry_job_t       job;
    ngx_http_registry_progress_t  progress;

    ngx_memzero(&gc, sizeof(ngx_http_registry_gc_t));
    ngx_memzero(&job, sizeof(ngx_http_registry_job_t));
    ngx_memzero(&progress, sizeof(ngx_http_registry_progress_t));

    job.progress = &progress;

    gc.tombs[0].fd = -1;
    gc.tombs[1].fd = -1;

    gc.op = op;
    gc.job = &job;
    gc.progress = &progress;
    gc.prefixes = prefixes;
    gc.report = json_object();

    rc = ngx_http_registry_gc_init(&gc);

    if (rc == NGX_OK) {
        rc = ngx_http_registry_gc_mark(&gc);
    }

    if (rc == NGX_OK) {
        rc = gc.invalid ? NGX_DECLINED
                        : ngx_http_registry_gc_answer(&gc, cached);
    }

    ngx_http_registry_gc_drop(&gc);
    json_decref(gc.report);

    return rc;
}


/* the mirrored repositories' links, a blob at a time, the local ones' out */

static ngx_int_t
ngx_http_registry_gc_answer(ngx_http_registry_gc_t *gc, ngx_array_t *cached)
{
    ngx_uint_t                        i;
    ngx_http_registry_gc_link_t      *link;
    ngx_http_registry_cached_t       *c;
    ngx_http_registry_cached_link_t  *cl;

    if (ngx_array_init(cached, gc->op->pool, 64,
                       sizeof(ngx_http_registry_cached_t))
        != NGX_OK)
    {
        return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
    }

    link = gc->pulls.elts;

    for (i = 0; i < gc->pulls.nelts; i++) {
        if (link[i].blob->marked) {
            continue;                   /* a local repository holds it */
        }

        if (link[i].blob->cached == 0) {
            c = ngx_array_push(cached);

            if (c == NULL
                || ngx_array_init(&c->links, gc->op->pool, 2,
                                  sizeof(ngx_http_registry_cached_link_t))
                   != NGX_OK)
            {
                return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
            }

            c->digest = link[i].blob->digest;
            c->pulled = 0;
            c->refs = NULL;
            c->nrefs = 0;
            c->manifest = 0;

            link[i].blob->cached = cached->nelts;
        }

        c = (ngx_http_registry_cached_t *) cached->elts
            + link[i].blob->cached - 1;

        cl = ngx_array_push(&c->links);
        if (cl == NULL) {
            return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
        }

        cl->name = link[i].name;
        cl->revision = link[i].revision;

        /* a manifest's last pull is its revisions', a blob's its links' */

        if (link[i].revision && !c->manifest) {
            c->manifest = 1;
            c->pulled = 0;
        }

        if (link[i].revision == c->manifest) {
            c->pulled = ngx_max(c->pulled, link[i].pulled);
        }
    }

    c = cached->elts;

    for (i = 0; i < cached->nelts; i++) {
        if (c[i].manifest
            && ngx_http_registry_gc_answer_refs(gc, &c[i]) != NGX_OK)
        {
            return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
        }
    }

    return NGX_OK;
}


/* the others of the answer a cached manifest references, by index */

static ngx_int_t
ngx_http_registry_gc_answer_refs(ngx_http_registry_gc_t *gc,
    ngx_http_registry_cached_t *c)
{
    ngx_uint_t                    i;
    ngx_http_registry_gc_blob_t  *b;

    b = ngx_http_registry_gc_blob(gc, &c->digest, 0);

    if (b == NULL || b->nrefs == 0) {
        return NGX_OK;
    }

    c->refs = ngx_palloc(gc->op->pool, b->nrefs * sizeof(ngx_uint_t));
    if (c->refs == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < b->nrefs; i++) {
        if (b->refs[i].blob->cached) {
            c->refs[c->nrefs++] = b->refs[i].blob->cached - 1;
        }
    }

    return NGX_OK;
}


/* ---- tombstones: back when live, deleted when old ---- */

static ngx_int_t
ngx_http_registry_gc_tombstones(ngx_http_registry_gc_t *gc)
{
    ngx_str_t                    *hex;
    ngx_uint_t                    alg, i;
    ngx_array_t                   hexes;
    ngx_http_registry_gc_tomb_t  *tomb;

    if (ngx_http_registry_gc_open_tombs(gc) != NGX_OK
        || ngx_array_init(&gc->tombstones, gc->op->pool, 64,
                          sizeof(ngx_http_registry_gc_tomb_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        if (gc->tombs[alg].fd == -1) {
            continue;                         /* none yet */
        }

        if (ngx_array_init(&hexes, gc->op->pool, 64, sizeof(ngx_str_t))
            != NGX_OK
            || ngx_http_registry_dir_list(gc->op, &gc->tombs[alg],
                                          NGX_HTTP_REGISTRY_LIST_FILES,
                                          &hexes)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

        hex = hexes.elts;

        for (i = 0; i < hexes.nelts; i++) {
            tomb = ngx_array_push(&gc->tombstones);
            if (tomb == NULL) {
                return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
            }

            ngx_memzero(tomb, sizeof(ngx_http_registry_gc_tomb_t));
            tomb->alg = alg;
            tomb->name = hex[i];
        }
    }

    ngx_qsort(gc->tombstones.elts, gc->tombstones.nelts,
              sizeof(ngx_http_registry_gc_tomb_t),
              ngx_http_registry_gc_tomb_cmp);

    if (ngx_http_registry_gc_records_read(gc) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_registry_gc_phase(gc, NGX_HTTP_REGISTRY_GC_TOMBSTONES,
                               gc->tombstones.nelts);

    return ngx_http_registry_gc_parallel(gc, ngx_http_registry_gc_tombs_part,
                                         &gc->tombstones, 0);
}


static int ngx_libc_cdecl
ngx_http_registry_gc_tomb_cmp(const void *one, const void *two)
{
    const ngx_http_registry_gc_tomb_t  *a = one, *b = two;

    if (a->alg != b->alg) {
        return (a->alg < b->alg) ? -1 : 1;
    }

    if (a->name.len != b->name.len) {
        return (a->name.len < b->name.len) ? -1 : 1;
    }

    return ngx_memcmp(a->name.data, b->name.data, a->name.len);
}


/* the tombstone of digest this run listed, or NULL */

static ngx_http_registry_gc_tomb_t *
ngx_http_registry_gc_tomb_find(ngx_http_registry_gc_t *gc,
    ngx_http_registry_digest_t *digest)
{
    ngx_http_registry_gc_tomb_t  key;

    key.alg = digest->alg;
    key.name = digest->hex;

    return bsearch(&key, gc->tombstones.elts, gc->tombstones.nelts,
                   sizeof(ngx_http_registry_gc_tomb_t),
                   ngx_http_registry_gc_tomb_cmp);
}


/* ---- the records of what earlier runs moved aside ---- */

/*
 * A record, _ngx_tombstones/moved/<when>, lists the digests a run moved
 * aside, one a line, and is written once the run is done with them: its
 * time, later than every move it lists, is when their second grace
 * starts.  So a move costs no stamp of its own.  A tombstone in no
 * record (its run was cut short before it wrote one, an eviction was,
 * or an older version of the module made it) starts its second grace
 * when a run finds it: it goes in that run's record.  A tombstone in
 * several (moved aside again after it came back) counts from the
 * latest.  Records older than the grace go at the end of a run that
 * completed: every tombstone they list was doomed by it, deleted or
 * brought back (or kept by a young link or an invalid manifest: then it
 * is in no record any more, and starts again).
 */

static ngx_int_t
ngx_http_registry_gc_records_read(ngx_http_registry_gc_t *gc)
{
    ngx_int_t    rc;
    ngx_str_t    dir, *name, *old;
    ngx_uint_t   i;
    ngx_array_t  names;

    if (ngx_array_init(&names, gc->op->pool, 8, sizeof(ngx_str_t)) != NGX_OK
        || ngx_http_registry_path_tomb_record(gc->op, &dir, NULL) != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_list(gc->op, &dir, NGX_HTTP_REGISTRY_LIST_FILES,
                                     &names);
    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_OK : NGX_ERROR;
    }

    name = names.elts;

    for (i = 0; i < names.nelts; i++) {
        rc = ngx_http_registry_gc_record_read(gc, &name[i]);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (rc == NGX_DECLINED) {             /* older than the grace */
            old = ngx_array_push(&gc->old_records);
            if (old == NULL) {
                return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
            }

            *old = name[i];
        }
    }

    return NGX_OK;
}


/*
 * One record: its tombstones get its time.  NGX_DECLINED: it is older
 * than the grace.  One that cannot be read is a problem, not an error:
 * its tombstones start their second grace again.
 */

static ngx_int_t
ngx_http_registry_gc_record_read(ngx_http_registry_gc_t *gc, ngx_str_t *name)
{
    ngx_int_t        rc;
    ngx_str_t        path;
    ngx_file_info_t  fi;
    ngx_fd_t         fd;

    if (ngx_http_registry_path_tomb_record(gc->op, &path, name) != NGX_OK) {
        return NGX_ERROR;
    }

    fd = ngx_http_registry_file_open(gc->op, &path, O_RDONLY|O_NOFOLLOW, 0);

    rc = (fd == NGX_INVALID_FILE || ngx_fd_info(fd, &fi) == NGX_FILE_ERROR)
         ? NGX_ERROR
         : ngx_http_registry_gc_record_lines(gc, fd, ngx_file_mtime(&fi));

    if (fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(fd);
    }

    if (rc != NGX_OK) {
        ngx_http_registry_gc_problem(gc, "cannot read a record of "
                                     "tombstones", NULL, name);
        return NGX_OK;
    }

    return (ngx_file_mtime(&fi) < gc->cutoff.tv_sec) ? NGX_DECLINED : NGX_OK;
}


/* its lines, a buffer at a time; one cut short by a crash is no digest */

static ngx_int_t
ngx_http_registry_gc_record_lines(ngx_http_registry_gc_t *gc, ngx_fd_t fd,
    time_t moved)
{
    u_char                        buf[NGX_HTTP_REGISTRY_GC_RECORD_BUF];
    u_char                       *p, *last, *eol;
    size_t                        kept;
    ssize_t                       n;
    ngx_str_t                     line;
    ngx_http_registry_digest_t    digest;
    ngx_http_registry_gc_tomb_t  *t;

    kept = 0;

    for ( ;; ) {
        n = read(fd, buf + kept, sizeof(buf) - kept);

        if (n == -1) {
            if (ngx_errno == NGX_EINTR) {
                continue;
            }

            return NGX_ERROR;
        }

        if (n == 0) {
            return NGX_OK;
        }

        p = buf;
        last = buf + kept + n;

        for ( /* void */ ; (eol = ngx_strlchr(p, last, '\n')); p = eol + 1) {
            line.data = p;
            line.len = eol - p;

            if (ngx_http_registry_parse_digest(&line, &digest) != NGX_OK) {
                continue;
            }

            t = ngx_http_registry_gc_tomb_find(gc, &digest);

            if (t && t->moved < moved) {
                t->moved = moved;
            }
        }

        /* a line longer than the buffer is no digest: dropped */

        kept = (p == buf && last == buf + sizeof(buf)) ? 0 : last - p;
        ngx_memmove(buf, p, kept);
    }
}


/* digest, a line of this run's record */

static ngx_int_t
ngx_http_registry_gc_record_digest(ngx_http_registry_gc_t *gc,
    ngx_http_registry_digest_t *digest)
{
    u_char  *p;

    p = ngx_array_push_n(&gc->record, digest->text.len + 1);
    if (p == NULL) {
        return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
    }

    p = ngx_cpymem(p, digest->text.data, digest->text.len);
    *p = '\n';

    return NGX_OK;
}


/* a part's lines into the run's */

static ngx_int_t
ngx_http_registry_gc_record_add(ngx_http_registry_gc_t *gc, u_char *lines,
    size_t len)
{
    u_char  *p;

    if (len == 0) {
        return NGX_OK;
    }

    p = ngx_array_push_n(&gc->record, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(p, lines, len);

    return NGX_OK;
}


/*
 * The end of a run: its record written (whatever was moved aside, even
 * by a run cut short), and, when it completed, the records older than
 * the grace removed.  A record that cannot be written is a problem: its
 * tombstones, in none, start their second grace at the next run.
 */

static void
ngx_http_registry_gc_records_end(ngx_http_registry_gc_t *gc, ngx_int_t rc)
{
    u_char      when[NGX_INT64_LEN * 2 + 2];
    ngx_str_t   name, path, dir, *old;
    ngx_uint_t  i;

    if (gc->job->dry_run) {
        return;
    }

    if (gc->record.nelts) {
        name.data = when;
        name.len = ngx_sprintf(when, "%T.%09l", gc->now.tv_sec,
                               gc->now.tv_nsec)
                   - when;

        if (ngx_http_registry_path_tomb_record(gc->op, &dir, NULL) != NGX_OK
            || ngx_http_registry_path_tomb_record(gc->op, &path, &name)
               != NGX_OK
            || ngx_http_registry_file_mkdirs(gc->op, &dir, 0) != NGX_OK
            || ngx_http_registry_file_write(gc->op, &path, gc->record.elts,
                                            gc->record.nelts, 0)
               != NGX_OK)
        {
            ngx_http_registry_gc_problem(gc, "cannot record the tombstones "
                                         "moved aside", NULL, &name);
        }
    }

    if (rc != NGX_OK || gc->invalid) {
        return;
    }

    old = gc->old_records.elts;

    for (i = 0; i < gc->old_records.nelts; i++) {
        if (ngx_http_registry_path_tomb_record(gc->op, &path, &old[i])
            == NGX_OK)
        {
            (void) ngx_http_registry_file_unlink(gc->op, &path, 0);
        }
    }
}


static ngx_int_t
ngx_http_registry_gc_tombs_part(ngx_http_registry_gc_t *gc,
    ngx_array_t *tombs)
{
    ngx_int_t                     rc;
    ngx_uint_t                    i;
    ngx_pool_t                   *pool;
    ngx_http_registry_gc_tomb_t  *tomb;

    tomb = tombs->elts;

    while (ngx_http_registry_gc_take(gc, tombs, &i)) {
        if (ngx_http_registry_gc_cancelled(gc)) {
            return NGX_DECLINED;
        }

        pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, gc->op->log);
        if (pool == NULL) {
            return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
        }

        rc = ngx_http_registry_gc_tombstone_sweep(gc, pool, &tomb[i]);

        ngx_destroy_pool(pool);

        if (rc != NGX_OK) {
            return rc;
        }

        (void) ngx_atomic_fetch_add(&gc->progress->done, 1);
    }

    return NGX_OK;
}


/*
 * One tombstone: back when live; old and unreached, doomed: deleted once
 * its layer links are gone (gc_unlink_links()), so that no link is ever
 * left to missing bytes, even when the run is cut short.
 */

static ngx_int_t
ngx_http_registry_gc_tombstone_sweep(ngx_http_registry_gc_t *gc,
    ngx_pool_t *pool, ngx_http_registry_gc_tomb_t *t)
{
    off_t                         size;
    ngx_int_t                     rc;
    ngx_str_t                     tomb, data, *hex;
    ngx_uint_t                    alg;
    ngx_http_registry_op_t        op;
    ngx_http_registry_digest_t    digest;
    ngx_http_registry_gc_blob_t  *b;

    op = *gc->op;
    op.pool = pool;
    size = 0;
    alg = t->alg;
    hex = &t->name;

    rc = ngx_http_registry_digest_of(pool, alg, hex, &digest);

    if (rc != NGX_OK) {
        return (rc == NGX_ERROR) ? ngx_http_registry_op_syserr(gc->op,
                                                               NGX_ENOMEM)
                                 : NGX_OK;
    }

    b = ngx_http_registry_gc_blob(gc, &digest, 0);

    if (b && b->marked) {
        if (ngx_http_registry_path_tombstone(&op, &tomb, alg, &digest)
            != NGX_OK
            || ngx_http_registry_path_blob(&op, &data, &digest) != NGX_OK)
        {
            return NGX_ERROR;
        }

        rc = gc->job->dry_run ? NGX_OK
             : ngx_http_registry_file_move(&op, &tomb, &data, 1);

        if (rc == NGX_ERROR) {
            ngx_http_registry_gc_problem(gc, "could not bring back a live "
                                         "blob's tombstone", NULL,
                                         &digest.text);
        }

        if (rc != NGX_OK) {
            return NGX_OK;                    /* or brought back meanwhile */
        }

        gc->blobs_restored++;
        ngx_http_registry_gc_list(gc, gc->restored, NULL, &digest.text);
        return NGX_OK;
    }

    /* its time is its record's (gc_records_read()); the stat gives its size */

    rc = ngx_http_registry_gc_young_in(gc, &op, &gc->tombs[alg], hex, &size);

    if (rc == NGX_DECLINED) {
        return NGX_OK;                        /* brought back meanwhile */
    }

    if (rc == NGX_ERROR) {
        ngx_http_registry_gc_problem(gc, "cannot stat a tombstone", NULL,
                                     &digest.text);
        return NGX_OK;
    }

    if (t->moved == 0 && !gc->job->dry_run
        && ngx_http_registry_gc_record_digest(gc, &digest) != NGX_OK)
    {
        return NGX_ERROR;                     /* in this run's record now */
    }

    /*
     * Bytes that stay keep their layer links (gc_unlink_links()): only a
     * blob with a record can have one.  The set is shared by this
     * phase's threads: it gains no record here.
     */

    if (t->moved >= gc->cutoff.tv_sec || t->moved == 0 || gc->invalid) {
        if (b) {
            b->kept = 1;
        }

        return NGX_OK;
    }

    if (b) {
        b->doomed = t;
    }

    t->blob = b;
    t->size = size;
    t->doomed = 1;

    return NGX_OK;
}


/* ---- blobs: the unmarked and old ones become tombstones ---- */

static ngx_int_t
ngx_http_registry_gc_blobs(ngx_http_registry_gc_t *gc)
{
    ngx_int_t                     rc;
    ngx_str_t                     path, *name;
    ngx_uint_t                    alg, i;
    ngx_array_t                   names, prefixes;
    ngx_http_registry_gc_prefix_t  *prefix;

    ngx_http_registry_gc_phase(gc, NGX_HTTP_REGISTRY_GC_BLOBS, 0);

    if (ngx_array_init(&prefixes, gc->op->pool, 256,
                       sizeof(ngx_http_registry_gc_prefix_t))
        != NGX_OK)
    {
        return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
    }

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        if (ngx_array_init(&names, gc->op->pool, 256, sizeof(ngx_str_t))
            != NGX_OK)
        {
            return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
        }

        if (ngx_http_registry_path_blobs(gc->op, &path, alg, NULL) != NGX_OK) {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_file_list(gc->op, &path,
                                         NGX_HTTP_REGISTRY_LIST_DIRS, &names);
        if (rc == NGX_DECLINED) {
            continue;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }

        name = names.elts;

        for (i = 0; i < names.nelts; i++) {
            prefix = ngx_array_push(&prefixes);
            if (prefix == NULL) {
                return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
            }

            prefix->alg = alg;
            prefix->name = name[i];
        }
    }

    return ngx_http_registry_gc_parallel(gc, ngx_http_registry_gc_sweep_part,
                                         &prefixes, 0);
}


/*
 * _ngx_tombstones/<alg>, made if missing (a dry run only reads them: it
 * makes none), open for the tombstones and the blobs phases.
 */

static ngx_int_t
ngx_http_registry_gc_open_tombs(ngx_http_registry_gc_t *gc)
{
    ngx_int_t   rc;
    ngx_str_t   path;
    ngx_uint_t  alg;

    for (alg = NGX_HTTP_REGISTRY_SHA256; alg <= NGX_HTTP_REGISTRY_SHA512; alg++)
    {
        if (ngx_http_registry_path_tombstone(gc->op, &path, alg, NULL)
            != NGX_OK
            || (!gc->job->dry_run
                && ngx_http_registry_file_mkdirs(gc->op, &path, 0) != NGX_OK))
        {
            return NGX_ERROR;
        }

        rc = ngx_http_registry_dir_open(gc->op, &path, &gc->tombs[alg]);

        if (rc == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_registry_gc_sweep_part(ngx_http_registry_gc_t *gc,
    ngx_array_t *prefixes)
{
    ngx_int_t                       rc;
    ngx_uint_t                      i;
    ngx_http_registry_gc_prefix_t  *prefix;

    prefix = prefixes->elts;

    while (ngx_http_registry_gc_take(gc, prefixes, &i)) {
        rc = ngx_http_registry_gc_blob_prefix(gc, prefix[i].alg,
                                              &prefix[i].name);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


/* blobs/<alg>/<xx>: its directories are the blobs, in a pool for them all */

static ngx_int_t
ngx_http_registry_gc_blob_prefix(ngx_http_registry_gc_t *gc, ngx_uint_t alg,
    ngx_str_t *prefix)
{
    ngx_int_t                   rc;
    ngx_str_t                   path, *hex;
    ngx_uint_t                  i;
    ngx_pool_t                 *pool;
    ngx_array_t                 hexes;
    ngx_http_registry_op_t      op;
    ngx_http_registry_dir_t     dir;
    ngx_http_registry_digest_t  digest;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, gc->op->log);
    if (pool == NULL) {
        return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
    }

    op = *gc->op;
    op.pool = pool;

    if (ngx_array_init(&hexes, pool, 512, sizeof(ngx_str_t)) != NGX_OK
        || ngx_http_registry_path_blobs(&op, &path, alg, prefix) != NGX_OK)
    {
        rc = NGX_ERROR;
        goto done;
    }

    rc = ngx_http_registry_dir_open(&op, &path, &dir);

    if (rc != NGX_OK) {
        if (rc == NGX_ERROR) {
            ngx_http_registry_gc_problem(gc, "cannot list blobs", NULL,
                                         &path);
        }

        rc = NGX_OK;                          /* nothing of it removed */
        goto done;
    }

    rc = ngx_http_registry_dir_list(&op, &dir, NGX_HTTP_REGISTRY_LIST_DIRS,
                                    &hexes);
    hex = hexes.elts;

    for (i = 0; rc == NGX_OK && i < hexes.nelts; i++) {
        if (ngx_http_registry_gc_cancelled(gc)) {
            rc = NGX_DECLINED;
            break;
        }

        rc = ngx_http_registry_digest_of(pool, alg, &hex[i], &digest);

        if (rc == NGX_OK) {
            gc->blobs_scanned++;
            (void) ngx_atomic_fetch_add(&gc->progress->done, 1);
            rc = ngx_http_registry_gc_blob_sweep(gc, &op, &dir, &hex[i],
                                                 &digest);

        } else if (rc == NGX_DECLINED) {
            rc = NGX_OK;
        }
    }

    ngx_http_registry_dir_close(&dir);

done:

    if (rc == NGX_ERROR) {
        gc->op->fault = op.fault;
    }

    ngx_destroy_pool(pool);

    return rc;
}


/* one blob of the prefix directory dir */

static ngx_int_t
ngx_http_registry_gc_blob_sweep(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_http_registry_dir_t *dir, ngx_str_t *hex,
    ngx_http_registry_digest_t *digest)
{
    off_t                         size;
    ngx_int_t                     rc;
    ngx_str_t                     rel;
    ngx_http_registry_gc_blob_t  *b;

    b = ngx_http_registry_gc_blob(gc, digest, 0);

    if (b && b->marked) {
        return NGX_OK;
    }

    size = 0;

    if (ngx_http_registry_path_in_blobs(op, &rel, &digest->hex) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_gc_young_in(gc, op, dir, &rel, &size);

    if (rc == NGX_DECLINED) {
        return ngx_http_registry_gc_empty_dir(gc, op, dir, hex);
    }

    if (rc == NGX_ERROR) {
        ngx_http_registry_gc_problem(gc, "cannot stat a blob", NULL,
                                     &digest->text);
        return NGX_OK;
    }

    /*
     * Bytes that stay keep their layer links (gc_unlink_links()): only
     * a blob with a record can have one.  The set is shared by the
     * sweep's threads: it gains no record here.
     */

    if (b) {
        b->kept = 1;
    }

    if (rc == NGX_OK || gc->invalid) {
        return NGX_OK;
    }

    if (gc->job->dry_run) {
        ngx_http_registry_gc_replaced(gc, digest);
        gc->blobs_tombstoned++;
        gc->bytes_tombstoned += size;
        ngx_http_registry_gc_list(gc, gc->tombstoned, NULL, &digest->text);
        return NGX_OK;
    }

    return ngx_http_registry_gc_bury(gc, op, dir, hex, &rel, digest, size);
}


/*
 * An unmarked blob directory without its data: the one a blob moved
 * aside by an earlier run left (gc_bury()), or one a crash or another
 * tool emptied.  It goes now; a commit or a restore filling it again
 * meanwhile keeps it (ENOTEMPTY), and both make it again when they find
 * it gone.
 */

static ngx_int_t
ngx_http_registry_gc_empty_dir(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_http_registry_dir_t *prefix,
    ngx_str_t *hex)
{
    if (!gc->job->dry_run) {
        (void) ngx_http_registry_dir_unlink(op, prefix, (char *) hex->data,
                                            1);
    }

    return NGX_OK;
}


/*
 * Moved aside, then checked: a refresh between the stat and the rename
 * left the time young (it goes back); one after the rename brings it
 * back itself.  Listed in the run's record, whose time starts the second
 * grace (gc_records_read()).  The blob's own directory, empty now, stays
 * until the next run (gc_empty_dir()): a restore finds it there, and
 * its rmdir would be a third system call on each move.  prefix:
 * blobs/<alg>/<xx>, hex the blob's directory in it (the listing's: a
 * directory, no symbolic link), rel its data (<hex>/data).  Two system
 * calls a blob: the rename and the check.
 */

static ngx_int_t
ngx_http_registry_gc_bury(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_http_registry_dir_t *prefix,
    ngx_str_t *hex, ngx_str_t *rel, ngx_http_registry_digest_t *digest,
    off_t size)
{
    ngx_int_t  rc;

    rc = ngx_http_registry_dir_rename(op, prefix, (char *) rel->data,
                                      &gc->tombs[digest->alg],
                                      (char *) hex->data);

    if (rc == NGX_OK) {
        ngx_http_registry_gc_replaced(gc, digest);
        rc = ngx_http_registry_gc_buried(gc, op, prefix, hex, rel, digest);
    }

    if (rc == NGX_ERROR) {
        ngx_http_registry_gc_problem(gc, "cannot move a blob aside", NULL,
                                     &digest->text);
    }

    if (rc != NGX_OK) {
        return NGX_OK;                        /* gone, or back meanwhile */
    }

    if (ngx_http_registry_gc_record_digest(gc, digest) != NGX_OK) {
        return NGX_ERROR;
    }

    gc->blobs_tombstoned++;
    gc->bytes_tombstoned += size;
    ngx_http_registry_gc_list(gc, gc->tombstoned, NULL, &digest->text);

    return NGX_OK;
}


/*
 * A doomed tombstone the move replaced: the bytes of an upload made
 * since took its place (the upload published them anew), and it is gone.
 * The new one is not doomed: its second grace starts with this run.
 */

static void
ngx_http_registry_gc_replaced(ngx_http_registry_gc_t *gc,
    ngx_http_registry_digest_t *digest)
{
    ngx_http_registry_gc_tomb_t  *t;

    t = ngx_http_registry_gc_tomb_find(gc, digest);

    if (t == NULL || !t->doomed) {
        return;
    }

    t->doomed = 0;

    gc->blobs_removed++;
    gc->bytes_freed += t->size;
    ngx_http_registry_gc_list(gc, gc->removed, NULL, &digest->text);
}


/* the check after the move: NGX_OK, a tombstone; NGX_DECLINED: back */

static ngx_int_t
ngx_http_registry_gc_buried(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_http_registry_dir_t *prefix,
    ngx_str_t *hex, ngx_str_t *rel, ngx_http_registry_digest_t *digest)
{
    char                     *name;
    ngx_int_t                 rc;
    ngx_http_registry_dir_t  *tombs;

    tombs = &gc->tombs[digest->alg];
    name = (char *) hex->data;

    rc = ngx_http_registry_gc_young_in(gc, op, tombs, hex, NULL);

    if (rc == NGX_OK) {
        if (ngx_http_registry_dir_rename(op, tombs, name, prefix,
                                         (char *) rel->data)
            == NGX_OK)
        {
            gc->blobs_restored++;
            ngx_http_registry_gc_list(gc, gc->restored, NULL, &digest->text);
        }

        return NGX_DECLINED;
    }

    return (rc == NGX_ABORT) ? NGX_OK : NGX_DECLINED;
}


/*
 * The pull-through cache's eviction (store_evict.c) deletes a blob that
 * nothing kept references by this collector's protocol, at once rather
 * than a grace later: moved aside, checked against since (the eviction's
 * start, less the slack: a refresh since then is a push, mount or
 * manifest that references the blob now, and it moves back), then
 * deleted.  A refresh after the move brings the tombstone back itself:
 * then the unlink finds nothing, or comes first and leaves the refresh
 * nothing to bring back, whose push fails (nothing it acknowledged is
 * lost).  NGX_DECLINED: kept, or not there.  *size: the bytes freed.
 */

ngx_int_t
ngx_http_registry_store_blob_evict(ngx_http_registry_op_t *op,
    ngx_http_registry_digest_t *digest, time_t since, off_t *size)
{
    ngx_int_t        rc;
    ngx_str_t        path, tomb;
    ngx_file_info_t  fi;

    *size = 0;

    if (ngx_http_registry_path_blob(op, &path, digest) != NGX_OK
        || ngx_http_registry_path_tombstone(op, &tomb, digest->alg, digest)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_file_move(op, &path, &tomb, 0);

    if (rc == NGX_OK) {
        rc = ngx_http_registry_file_stat(op, &tomb, &fi);
    }

    if (rc != NGX_OK) {
        return rc;                  /* not there, or back meanwhile */
    }

    if (ngx_file_mtime(&fi) >= since - NGX_HTTP_REGISTRY_GC_SLACK) {
        rc = ngx_http_registry_file_move(op, &tomb, &path, 1);
        return (rc == NGX_ERROR) ? NGX_ERROR : NGX_DECLINED;
    }

    rc = ngx_http_registry_file_unlink(op, &tomb, 0);

    if (rc != NGX_OK) {
        return rc;                  /* brought back meanwhile */
    }

    *size = ngx_file_size(&fi);

    return (ngx_http_registry_file_rmdir_parent(op, &path) == NGX_ERROR)
           ? NGX_ERROR : NGX_OK;
}


/* ---- links ---- */

/*
 * A candidate goes if its blob is live elsewhere or doomed; one whose
 * bytes stay (tombstoned now, or young) stays with them.  Its time is
 * checked again first: a push may have made it young since, and then a
 * doomed blob stays too (the push's refresh brings it back).  The doomed
 * tombstones go last, once the directories that lost their links are
 * synced: a kill or a power cut at any point leaves no layer link to
 * bytes that are gone, only tombstones the next run deletes.
 */

static ngx_int_t
ngx_http_registry_gc_unlink_links(ngx_http_registry_gc_t *gc)
{
    ngx_int_t                      rc;
    ngx_uint_t                     i, n;
    ngx_array_t                    groups;
    ngx_http_registry_gc_link_t   *cand;
    ngx_http_registry_gc_group_t  *group;

    ngx_http_registry_gc_phase(gc, NGX_HTTP_REGISTRY_GC_LINKS,
                               gc->links.nelts);

    if (ngx_array_init(&groups, gc->op->pool, 64,
                       sizeof(ngx_http_registry_gc_group_t))
        != NGX_OK)
    {
        return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
    }

    cand = gc->links.elts;

    for (i = 0; i < gc->links.nelts; i += n) {
        n = ngx_http_registry_gc_link_group(cand + i, gc->links.nelts - i);

        group = ngx_array_push(&groups);
        if (group == NULL) {
            return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
        }

        group->cand = cand + i;
        group->n = n;
    }

    rc = ngx_http_registry_gc_parallel(gc, ngx_http_registry_gc_unlink_part,
                                       &groups, 0);

    if (gc->links_removed && !gc->job->dry_run) {
        ngx_http_registry_links_changed(gc->op);
    }

    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_registry_gc_parallel(gc, ngx_http_registry_gc_delete_part,
                                         &gc->tombstones, 0);
}


/*
 * How many candidates from the first are in its repository's
 * _layers/<alg>: a repository's come together (gc_layer(), gc_join()).
 */

static ngx_uint_t
ngx_http_registry_gc_link_group(ngx_http_registry_gc_link_t *cand,
    ngx_uint_t n)
{
    ngx_uint_t  k;

    for (k = 1; k < n; k++) {
        if (cand[k].blob->digest.alg != cand[0].blob->digest.alg
            || cand[k].name.len != cand[0].name.len
            || ngx_strncmp(cand[k].name.data, cand[0].name.data,
                           cand[0].name.len)
               != 0)
        {
            break;
        }
    }

    return k;
}


/*
 * The groups of candidates this part takes.  Two parts may judge links
 * to the same blob (in two repositories): either may set its kept, and
 * nothing else of the blob changes in this phase.
 */

static ngx_int_t
ngx_http_registry_gc_unlink_part(ngx_http_registry_gc_t *gc,
    ngx_array_t *groups)
{
    ngx_int_t                      rc;
    ngx_uint_t                     i;
    ngx_http_registry_gc_group_t  *group;

    group = groups->elts;

    while (ngx_http_registry_gc_take(gc, groups, &i)) {
        rc = ngx_http_registry_gc_unlink_group(gc, group[i].cand, group[i].n);

        if (rc != NGX_OK) {
            return rc;
        }

        (void) ngx_atomic_fetch_add(&gc->progress->done, group[i].n);
    }

    return NGX_OK;
}


/*
 * The candidates of one _layers/<alg>, held open (opened for the first
 * one that may go): it is synced once it lost a doomed blob's link.
 */

static ngx_int_t
ngx_http_registry_gc_unlink_group(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_link_t *cand, ngx_uint_t n)
{
    ngx_int_t                 rc;
    ngx_str_t                 path;
    ngx_uint_t                k, doomed;
    ngx_pool_t               *pool;
    ngx_http_registry_op_t    op;
    ngx_http_registry_dir_t   dir;

    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, gc->op->log);
    if (pool == NULL) {
        return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
    }

    op = *gc->op;
    op.pool = pool;
    dir.fd = -1;
    doomed = 0;
    rc = NGX_OK;

    for (k = 0; k < n && rc == NGX_OK; k++) {
        if (ngx_http_registry_gc_cancelled(gc)) {
            rc = NGX_DECLINED;
            break;
        }

        if (gc->invalid || (!cand[k].blob->marked && cand[k].blob->kept)) {
            continue;
        }

        if (!gc->job->dry_run && dir.fd == -1) {
            rc = ngx_http_registry_path_layers(&op, &path, &cand[k].name,
                                               cand[k].blob->digest.alg);
            if (rc == NGX_OK) {
                rc = ngx_http_registry_dir_open(&op, &path, &dir);
            }

            if (rc == NGX_DECLINED) {
                rc = NGX_OK;                  /* gone, and its links */
                break;
            }

            if (rc != NGX_OK) {
                break;
            }
        }

        if (!gc->job->dry_run) {
            rc = ngx_http_registry_gc_unlink_link(gc, &op, &dir, &cand[k]);

            if (rc == NGX_DECLINED) {
                rc = NGX_OK;
                continue;
            }

            if (rc != NGX_OK) {
                break;
            }
        }

        gc->links_removed++;
        ngx_http_registry_gc_list(gc, gc->links_list, &cand[k].name,
                                  &cand[k].blob->digest.text);
        doomed |= (cand[k].blob->doomed != NULL);
    }

    if (rc == NGX_OK && doomed && dir.fd != -1) {
        rc = ngx_http_registry_dir_sync(&op, &dir);
    }

    if (rc == NGX_ERROR) {
        gc->op->fault = op.fault;
    }

    ngx_http_registry_dir_close(&dir);
    ngx_destroy_pool(pool);

    return rc;
}


/*
 * One candidate in its _layers/<alg> (layers): its link and the link's
 * directory go, unless found young again (a push in flight: its blob
 * stays, doomed or not).  NGX_DECLINED: kept, or gone.
 */

static ngx_int_t
ngx_http_registry_gc_unlink_link(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_http_registry_dir_t *layers,
    ngx_http_registry_gc_link_t *cand)
{
    ngx_int_t                 rc;
    ngx_str_t                 rel, *hex;
    ngx_http_registry_dir_t   link_dir;

    hex = &cand->blob->digest.hex;

    if (ngx_http_registry_path_in_links(op, &rel, hex) != NGX_OK) {
        return NGX_ERROR;
    }

    rc = ngx_http_registry_gc_young_in(gc, op, layers, &rel, NULL);

    if (rc == NGX_OK) {
        cand->blob->kept = 1;
        return NGX_DECLINED;
    }

    if (rc != NGX_ABORT) {
        return rc;
    }

    rc = ngx_http_registry_dir_open_in(op, layers, hex, &link_dir);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_registry_dir_unlink(op, &link_dir, "link", 0);
    ngx_http_registry_dir_close(&link_dir);

    if (rc == NGX_OK) {
        (void) ngx_http_registry_dir_unlink(op, layers, (char *) hex->data, 1);
    }

    return rc;
}


/*
 * The doomed tombstones whose links are gone, unless a push came since:
 * a young link kept the blob, or a refresh brought it back to blobs/
 * (this run's sweep then met it: kept) or moved it aside anew (young).
 */

static ngx_int_t
ngx_http_registry_gc_delete_part(ngx_http_registry_gc_t *gc,
    ngx_array_t *tombs)
{
    ngx_uint_t                    i;
    ngx_http_registry_digest_t    digest;
    ngx_http_registry_gc_tomb_t  *t;

    t = tombs->elts;

    while (ngx_http_registry_gc_take(gc, tombs, &i)) {
        if (ngx_http_registry_gc_cancelled(gc)) {
            return NGX_DECLINED;
        }

        if (!t[i].doomed || (t[i].blob && t[i].blob->kept)) {
            continue;
        }

        /*
         * Its own time is its bytes' last reference: a young one is bytes
         * moved onto it since, by an eviction checking a blob that is
         * referenced again (store_blob_evict()), which moves them back.
         */

        if (ngx_http_registry_gc_young_in(gc, gc->op, &gc->tombs[t[i].alg],
                                          &t[i].name, NULL)
            != NGX_ABORT)
        {
            continue;                         /* young, gone, or no stat */
        }

        if (!gc->job->dry_run
            && ngx_http_registry_dir_unlink(gc->op, &gc->tombs[t[i].alg],
                                            (char *) t[i].name.data, 0)
               != NGX_OK)
        {
            continue;                         /* brought back meanwhile */
        }

        if (ngx_http_registry_digest_of(gc->op->pool, t[i].alg, &t[i].name,
                                        &digest)
            != NGX_OK)
        {
            return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
        }

        gc->blobs_removed++;
        gc->bytes_freed += t[i].size;
        ngx_http_registry_gc_list(gc, gc->removed, NULL, &digest.text);
    }

    return NGX_OK;
}


/*
 * NGX_OK: the file is younger than the grace; NGX_ABORT: older;
 * NGX_DECLINED: absent.  *size: its size.
 */

static ngx_int_t
ngx_http_registry_gc_young(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_str_t *path, off_t *size)
{
    ngx_int_t        rc;
    ngx_file_info_t  fi;

    rc = ngx_http_registry_file_stat(op, path, &fi);

    return (rc == NGX_OK) ? ngx_http_registry_gc_age(gc, &fi, size) : rc;
}


/* the same for rel beneath dir: a judgement, not yet an act */

static ngx_int_t
ngx_http_registry_gc_young_in(ngx_http_registry_gc_t *gc,
    ngx_http_registry_op_t *op, ngx_http_registry_dir_t *dir, ngx_str_t *rel,
    off_t *size)
{
    ngx_int_t        rc;
    ngx_file_info_t  fi;

    rc = ngx_http_registry_dir_stat(op, dir, rel, &fi);

    return (rc == NGX_OK) ? ngx_http_registry_gc_age(gc, &fi, size) : rc;
}


static ngx_int_t
ngx_http_registry_gc_age(ngx_http_registry_gc_t *gc, ngx_file_info_t *fi,
    off_t *size)
{
    if (size) {
        *size = fi->st_size;
    }

    if (fi->st_mtim.tv_sec > gc->cutoff.tv_sec
        || (fi->st_mtim.tv_sec == gc->cutoff.tv_sec
            && fi->st_mtim.tv_nsec >= gc->cutoff.tv_nsec))
    {
        return NGX_OK;
    }

    return NGX_ABORT;
}


/* ---- threads ---- */

/*
 * part() over items, shared out among up to one thread per CPU: each, in
 * a part of the run of its own (gc_fork()), taken back in after
 * (gc_join()), takes the next item not taken yet (gc_take()), so that
 * a thread that gets less of a CPU, or bigger repositories, does less
 * of them.  A part with own_sets has a set of digests of its own, to
 * fill (the mark); without, it reads the run's, which nothing changes
 * meanwhile (the sweep).  A thread that cannot be made leaves its items
 * to the others.
 */

static ngx_int_t
ngx_http_registry_gc_parallel(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_part_pt part, ngx_array_t *items,
    ngx_uint_t own_sets)
{
    ngx_int_t                rc, prc;
    ngx_uint_t               k, n;
    ngx_atomic_t             cursor;
    pthread_t                tid[NGX_HTTP_REGISTRY_GC_PARTS];
    ngx_uint_t               started[NGX_HTTP_REGISTRY_GC_PARTS];
    ngx_http_registry_gc_t  *parts[NGX_HTTP_REGISTRY_GC_PARTS];

    n = ngx_min((ngx_uint_t) ngx_max(ngx_ncpu, 1), ngx_max(items->nelts, 1));
    n = ngx_min(n, NGX_HTTP_REGISTRY_GC_PARTS);

    for (k = 1; k < n; k++) {
        parts[k] = ngx_http_registry_gc_fork(gc, own_sets);

        if (parts[k] == NULL) {
            n = k;
            break;
        }
    }

    cursor = 0;
    gc->cursor = &cursor;

    for (k = 1; k < n; k++) {
        parts[k]->part = part;
        parts[k]->items = items;
        parts[k]->cursor = &cursor;

        started[k] = (pthread_create(&tid[k], NULL,
                                     ngx_http_registry_gc_thread, parts[k])
                      == 0);
    }

    rc = part(gc, items);

    for (k = 1; k < n; k++) {
        if (started[k]) {
            (void) pthread_join(tid[k], NULL);
        }

        prc = ngx_http_registry_gc_join(gc, parts[k]);

        if (rc == NGX_OK || prc == NGX_ERROR) {
            rc = prc;
        }
    }

    gc->cursor = NULL;

    return rc;
}


static void *
ngx_http_registry_gc_thread(void *data)
{
    ngx_http_registry_gc_t  *part = data;

    part->rc = part->part(part, part->items);

    return NULL;
}


/* the index of the next item of the run's part() not taken yet, if any */

static ngx_uint_t
ngx_http_registry_gc_take(ngx_http_registry_gc_t *gc, ngx_array_t *items,
    ngx_uint_t *i)
{
    *i = ngx_atomic_fetch_add(gc->cursor, 1);

    return *i < items->nelts;
}


/* a part of the run: its pool, op, records and lists; NULL: no memory */

static ngx_http_registry_gc_t *
ngx_http_registry_gc_fork(ngx_http_registry_gc_t *gc, ngx_uint_t own_sets)
{
    ngx_pool_t              *pool;
    ngx_http_registry_gc_t  *part;

    part = ngx_pcalloc(gc->op->pool, sizeof(ngx_http_registry_gc_t));
    pool = ngx_create_pool(NGX_DEFAULT_POOL_SIZE, gc->op->log);

    if (part == NULL || pool == NULL) {
        goto failed;
    }

    part->part_op = *gc->op;
    part->part_op.pool = pool;
    ngx_memzero(&part->part_op.fault, sizeof(ngx_http_registry_fault_t));

    part->op = &part->part_op;
    part->job = gc->job;
    part->prefixes = gc->prefixes;
    part->progress = gc->progress;
    part->now = gc->now;
    part->cutoff = gc->cutoff;
    part->invalid = gc->invalid;
    part->blobs = gc->blobs;
    part->tombs[0] = gc->tombs[0];
    part->tombs[1] = gc->tombs[1];
    part->tombstones = gc->tombstones;

    part->removed = json_array();
    part->tombstoned = json_array();
    part->restored = json_array();
    part->links_list = json_array();
    part->revisions_list = json_array();
    part->problems = json_array();

    if (part->removed == NULL || part->tombstoned == NULL
        || part->restored == NULL || part->links_list == NULL
        || part->revisions_list == NULL || part->problems == NULL
        || ngx_array_init(&part->links, pool, 16,
                          sizeof(ngx_http_registry_gc_link_t))
           != NGX_OK
        || ngx_array_init(&part->pulls, pool, 16,
                          sizeof(ngx_http_registry_gc_link_t))
           != NGX_OK
        || ngx_array_init(&part->record, pool, 4096, 1) != NGX_OK
        || (own_sets
            && ngx_http_registry_gc_set_init(&part->blobs, pool) != NGX_OK))
    {
        goto failed;
    }

    return part;

failed:

    if (part) {
        ngx_http_registry_gc_drop(part);
    }

    if (pool) {
        ngx_destroy_pool(pool);
    }

    return NULL;
}


/*
 * The part back into the run: its records' marks, its link candidates
 * (names and records of the run's own), its counts and lists.
 */

static ngx_int_t
ngx_http_registry_gc_join(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_t *part)
{
    ngx_int_t  rc;

    rc = part->rc;

    if (rc == NGX_ERROR) {
        gc->op->fault = part->op->fault;

    } else if ((part->blobs.slots != gc->blobs.slots
                && ngx_http_registry_gc_join_marks(gc, part) != NGX_OK)
               || ngx_http_registry_gc_record_add(gc, part->record.elts,
                                                  part->record.nelts)
                  != NGX_OK)
    {
        rc = ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
    }

    gc->invalid |= part->invalid;
    gc->repositories += part->repositories;
    gc->manifests += part->manifests;
    gc->blobs_scanned += part->blobs_scanned;
    gc->blobs_tombstoned += part->blobs_tombstoned;
    gc->bytes_tombstoned += part->bytes_tombstoned;
    gc->blobs_restored += part->blobs_restored;
    gc->blobs_removed += part->blobs_removed;
    gc->bytes_freed += part->bytes_freed;
    gc->links_removed += part->links_removed;
    gc->revisions_removed += part->revisions_removed;
    gc->problems_found += part->problems_found;

    ngx_http_registry_gc_join_list(gc->removed, part->removed);
    ngx_http_registry_gc_join_list(gc->tombstoned, part->tombstoned);
    ngx_http_registry_gc_join_list(gc->restored, part->restored);
    ngx_http_registry_gc_join_list(gc->links_list, part->links_list);
    ngx_http_registry_gc_join_list(gc->revisions_list, part->revisions_list);
    ngx_http_registry_gc_join_list(gc->problems, part->problems);

    ngx_http_registry_gc_drop(part);
    ngx_destroy_pool(part->op->pool);

    return rc;
}


/*
 * The part's records into the run's, with their marks (and, for the
 * pulls, what its manifests reference), then its links.
 */

static ngx_int_t
ngx_http_registry_gc_join_marks(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_t *part)
{
    ngx_uint_t                     i;
    ngx_http_registry_gc_blob_t   *b, *ours;

    for (i = 0; i <= part->blobs.mask; i++) {
        b = part->blobs.slots[i].blob;

        if (b == NULL) {
            continue;
        }

        ours = ngx_http_registry_gc_blob(gc, &b->digest, 1);
        if (ours == NULL) {
            return NGX_ERROR;
        }

        ours->marked |= b->marked;

        if (gc->prefixes && b->read && !ours->read
            && ngx_http_registry_gc_join_refs(gc, ours, b) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_registry_gc_join_links(gc, &gc->links, &part->links)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_registry_gc_join_links(gc, &gc->pulls, &part->pulls);
}


/* what the part read of a manifest, in the run's records */

static ngx_int_t
ngx_http_registry_gc_join_refs(ngx_http_registry_gc_t *gc,
    ngx_http_registry_gc_blob_t *ours, ngx_http_registry_gc_blob_t *theirs)
{
    ngx_uint_t  i;

    ours->read = 1;
    ours->invalid = theirs->invalid;
    ours->nrefs = theirs->nrefs;
    ours->refs = ngx_palloc(gc->op->pool,
                            ours->nrefs * sizeof(ngx_http_registry_gc_ref_t));

    if (ours->refs == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < ours->nrefs; i++) {
        ours->refs[i].manifest = theirs->refs[i].manifest;
        ours->refs[i].blob = ngx_http_registry_gc_blob(gc,
                                            &theirs->refs[i].blob->digest, 1);

        if (ours->refs[i].blob == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the part's links onto ours: names and records of the run's own */

static ngx_int_t
ngx_http_registry_gc_join_links(ngx_http_registry_gc_t *gc, ngx_array_t *ours,
    ngx_array_t *theirs)
{
    ngx_str_t                     name;
    ngx_uint_t                    i;
    ngx_http_registry_gc_link_t  *their, *link;

    their = theirs->elts;
    ngx_str_null(&name);

    for (i = 0; i < theirs->nelts; i++) {

        /* a repository's links are together, with the same name */

        if (name.data == NULL || name.len != their[i].name.len
            || ngx_strncmp(name.data, their[i].name.data, name.len) != 0)
        {
            name.len = their[i].name.len;
            name.data = ngx_pstrdup(gc->op->pool, &their[i].name);
        }

        link = ngx_array_push(ours);

        if (name.data == NULL || link == NULL) {
            return NGX_ERROR;
        }

        *link = their[i];
        link->name = name;
        link->blob = ngx_http_registry_gc_blob(gc, &their[i].blob->digest, 0);
    }

    return NGX_OK;
}


/* at most NGX_HTTP_REGISTRY_GC_LISTED entries, as gc_list() keeps */

static void
ngx_http_registry_gc_join_list(json_t *ours, json_t *theirs)
{
    size_t   i;

    for (i = 0; i < json_array_size(theirs); i++) {
        if (json_array_size(ours) >= NGX_HTTP_REGISTRY_GC_LISTED) {
            return;
        }

        (void) json_array_append(ours, json_array_get(theirs, i));
    }
}


static void
ngx_http_registry_gc_drop(ngx_http_registry_gc_t *part)
{
    json_decref(part->removed);
    json_decref(part->tombstoned);
    json_decref(part->restored);
    json_decref(part->links_list);
    json_decref(part->revisions_list);
    json_decref(part->problems);
}


static ngx_uint_t
ngx_http_registry_gc_count_marked(ngx_http_registry_gc_t *gc)
{
    ngx_uint_t  i, n;

    n = 0;

    for (i = 0; i <= gc->blobs.mask; i++) {
        n += (gc->blobs.slots[i].blob && gc->blobs.slots[i].blob->marked);
    }

    return n;
}


/* ---- progress and report ---- */

static ngx_int_t
ngx_http_registry_gc_cancelled(ngx_http_registry_gc_t *gc)
{
    return gc->progress->cancel != 0;
}


static void
ngx_http_registry_gc_phase(ngx_http_registry_gc_t *gc, ngx_uint_t phase,
    ngx_uint_t total)
{
    gc->progress->done = 0;
    gc->progress->total = total;
    gc->progress->phase = phase;
}


/* at most NGX_HTTP_REGISTRY_GC_LISTED of each kind; the totals count all */

static void
ngx_http_registry_gc_list(ngx_http_registry_gc_t *gc, json_t *list,
    ngx_str_t *repo, ngx_str_t *digest)
{
    json_t  *entry;

    if (json_array_size(list) >= NGX_HTTP_REGISTRY_GC_LISTED) {
        return;
    }

    if (repo == NULL) {
        entry = json_stringn((char *) digest->data, digest->len);

    } else {
        entry = json_pack("{s:s%,s:s%}",
                          "repository", (char *) repo->data, repo->len,
                          "digest", (char *) digest->data, digest->len);
    }

    (void) json_array_append_new(list, entry);
}


static void
ngx_http_registry_gc_problem(ngx_http_registry_gc_t *gc, const char *what,
    ngx_str_t *repo, ngx_str_t *digest)
{
    json_t  *entry;

    gc->problems_found++;

    if (repo) {
        ngx_log_error(NGX_LOG_WARN, gc->op->log, 0,
                      "registry gc: %s: \"%V\" in \"%V\"", what, digest,
                      repo);
    } else {
        ngx_log_error(NGX_LOG_WARN, gc->op->log, 0,
                      "registry gc: %s: \"%V\"", what, digest);
    }

    if (json_array_size(gc->problems) >= NGX_HTTP_REGISTRY_GC_LISTED) {
        return;
    }

    entry = json_pack("{s:s,s:s%}", "problem", what,
                      "digest", (char *) digest->data, digest->len);

    if (entry && repo) {
        (void) json_object_set_new(entry, "repository",
                                   json_stringn((char *) repo->data,
                                                repo->len));
    }

    (void) json_array_append_new(gc->problems, entry);
}


/* the totals at the top level, for metrics; the lists bounded */

static ngx_int_t
ngx_http_registry_gc_report(ngx_http_registry_gc_t *gc, ngx_int_t rc)
{
    json_t  *r;

    r = gc->report;

    if (r == NULL) {
        return ngx_http_registry_op_syserr(gc->op, NGX_ENOMEM);
    }

    (void) json_object_set_new(r, "dry_run",
                               json_boolean(gc->job->dry_run));
    (void) json_object_set_new(r, "delete_untagged",
                               json_boolean(gc->job->delete_untagged));
    (void) json_object_set_new(r, "grace", json_integer(gc->job->grace));
    (void) json_object_set_new(r, "cancelled",
                               json_boolean(rc == NGX_DECLINED));
    (void) json_object_set_new(r, "removed_nothing",
                               json_boolean(gc->invalid));

#define ngx_http_registry_gc_total(name)                                     \
    (void) json_object_set_new(r, #name, json_integer(gc->name))

    ngx_http_registry_gc_total(repositories);
    ngx_http_registry_gc_total(manifests);
    ngx_http_registry_gc_total(blobs_marked);
    ngx_http_registry_gc_total(blobs_scanned);
    ngx_http_registry_gc_total(blobs_tombstoned);
    ngx_http_registry_gc_total(bytes_tombstoned);
    ngx_http_registry_gc_total(blobs_restored);
    ngx_http_registry_gc_total(blobs_removed);
    ngx_http_registry_gc_total(bytes_freed);
    ngx_http_registry_gc_total(links_removed);
    ngx_http_registry_gc_total(revisions_removed);

#undef ngx_http_registry_gc_total

    (void) json_object_set_new(r, "problems_found",
                               json_integer(gc->problems_found));

    (void) json_object_set_new(r, "removed", gc->removed);
    (void) json_object_set_new(r, "tombstoned", gc->tombstoned);
    (void) json_object_set_new(r, "restored", gc->restored);
    (void) json_object_set_new(r, "links", gc->links_list);
    (void) json_object_set_new(r, "revisions", gc->revisions_list);
    (void) json_object_set_new(r, "problems", gc->problems);

    return rc;
}


/* ---- the set of digests ---- */

/* the run's record of a digest, made on first sight when create */

static ngx_http_registry_gc_blob_t *
ngx_http_registry_gc_blob(ngx_http_registry_gc_t *gc,
    ngx_http_registry_digest_t *digest, ngx_uint_t create)
{
    uint64_t                      hash;
    ngx_http_registry_gc_blob_t  *b;
    ngx_http_registry_gc_slot_t  *slot;

    hash = ngx_http_registry_gc_hash(&digest->text);
    slot = ngx_http_registry_gc_set_slot(&gc->blobs, hash, &digest->text);

    if (slot->blob || !create) {
        return slot->blob;
    }

    b = ngx_pcalloc(gc->op->pool, sizeof(ngx_http_registry_gc_blob_t));

    if (b == NULL
        || ngx_http_registry_digest_copy(gc->op->pool, digest->text.data,
                                         digest->text.len, &b->digest)
           != NGX_OK)
    {
        return NULL;
    }

    slot->hash = hash;
    slot->blob = b;

    return (ngx_http_registry_gc_set_grow(&gc->blobs) == NGX_OK) ? b : NULL;
}


static ngx_int_t
ngx_http_registry_gc_set_init(ngx_http_registry_gc_set_t *set,
    ngx_pool_t *pool)
{
    set->pool = pool;
    set->count = 0;
    set->mask = NGX_HTTP_REGISTRY_GC_SET_MIN - 1;
    set->slots = ngx_pcalloc(pool, NGX_HTTP_REGISTRY_GC_SET_MIN
                                   * sizeof(ngx_http_registry_gc_slot_t));

    return (set->slots == NULL) ? NGX_ERROR : NGX_OK;
}


/*
 * The digest's own: sixteen of its hex digits, mixed (a digest is
 * random, but hex digits carry four bits a byte, in their low bits).
 * "<alg>:<hex>": the last sixteen, as every hex is longer.
 */

static uint64_t
ngx_http_registry_gc_hash(ngx_str_t *digest)
{
    uint64_t  a, b, h;

    ngx_memcpy(&a, digest->data + digest->len - 16, 8);
    ngx_memcpy(&b, digest->data + digest->len - 8, 8);

    h = (a * 0x9e3779b97f4a7c15ULL) ^ (b * 0xc2b2ae3d27d4eb4fULL);

    return h ^ (h >> 31);
}


/* the slot holding the digest, or the empty one where it would go */

static ngx_http_registry_gc_slot_t *
ngx_http_registry_gc_set_slot(ngx_http_registry_gc_set_t *set, uint64_t hash,
    ngx_str_t *digest)
{
    ngx_uint_t                    i;
    ngx_http_registry_gc_slot_t  *slot;

    for (i = hash & set->mask; /* void */ ; i = (i + 1) & set->mask) {
        slot = &set->slots[i];

        if (slot->blob == NULL
            || (slot->hash == hash
                && slot->blob->digest.text.len == digest->len
                && ngx_memcmp(slot->blob->digest.text.data, digest->data,
                              digest->len)
                   == 0))
        {
            return slot;
        }
    }
}


/* one more record in the set: it doubles when half full */

static ngx_int_t
ngx_http_registry_gc_set_grow(ngx_http_registry_gc_set_t *set)
{
    ngx_uint_t                    i, j, size;
    ngx_http_registry_gc_slot_t  *old;

    if (2 * ++set->count <= set->mask + 1) {
        return NGX_OK;
    }

    old = set->slots;
    size = set->mask + 1;

    set->slots = ngx_pcalloc(set->pool,
                             2 * size * sizeof(ngx_http_registry_gc_slot_t));
    if (set->slots == NULL) {
        return NGX_ERROR;
    }

    set->mask = 2 * size - 1;

    for (i = 0; i < size; i++) {
        if (old[i].blob) {
            for (j = old[i].hash & set->mask;
                 set->slots[j].blob;
                 j = (j + 1) & set->mask)
            {
                /* void */
            }

            set->slots[j] = old[i];
        }
    }

    /* a large table goes at once, a small one with the pool */
    (void) ngx_pfree(set->pool, old);

    return NGX_OK;
}
