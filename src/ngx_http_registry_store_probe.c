
/*
 * ngx_http_registry_module: the store's probe, for registry_health.
 *
 * A store serves when a file can be created in it, written, read back
 * and removed: the probe does exactly that with a temporary file of its
 * own (a unique name under _ngx_tmp, O_EXCL, one byte, no fsync), so a
 * full disk, a store made read-only, a missing or replaced directory, an
 * I/O error each fail it as they would fail a push or a pull.  It blocks
 * on the disk like any write: a task's work.  NGX_ERROR: op->fault says
 * what failed, its detail the step and its errnum the system's reason.
 */


#include "ngx_http_registry_store.h"


static ngx_int_t ngx_http_registry_probe_step(ngx_http_registry_op_t *op,
    const char *detail);


ngx_int_t
ngx_http_registry_store_probe(ngx_http_registry_op_t *op)
{
    ngx_int_t                  rc;
    ngx_str_t                  content;
    ngx_http_registry_file_t   file;
    ngx_http_registry_fault_t  fault;

    if (ngx_http_registry_file_temp(op, &file) != NGX_OK) {
        return ngx_http_registry_probe_step(op, "cannot create a file in "
                                            "the store");
    }

    rc = ngx_http_registry_file_write_all(op, &file, (u_char *) "1", 1, 0);

    if (rc != NGX_OK) {
        rc = ngx_http_registry_probe_step(op, "cannot write in the store");
    }

    if (ngx_http_registry_file_close(op, &file) != NGX_OK && rc == NGX_OK) {
        rc = ngx_http_registry_probe_step(op, "cannot close a file of the "
                                          "store");
    }

    if (rc == NGX_OK) {
        rc = ngx_http_registry_file_read(op, &file.path, 1, &content);

        if (rc == NGX_DECLINED
            || (rc == NGX_OK && (content.len != 1 || content.data[0] != '1')))
        {
            rc = ngx_http_registry_op_fail(op, NGX_HTTP_REGISTRY_INTERNAL,
                                           "a file written to the store "
                                           "reads back otherwise");

        } else if (rc != NGX_OK) {
            rc = ngx_http_registry_probe_step(op, "cannot read the store");
        }
    }

    /* removed whatever failed, the first failure told */

    fault = op->fault;

    if (ngx_http_registry_file_unlink(op, &file.path, 0) == NGX_ERROR) {
        if (rc == NGX_OK) {
            return ngx_http_registry_probe_step(op, "cannot remove a file "
                                                "from the store");
        }
    }

    op->fault = fault;

    return rc;
}


/* the failed call's fault (code and errnum) is kept; the step says where */

static ngx_int_t
ngx_http_registry_probe_step(ngx_http_registry_op_t *op, const char *detail)
{
    op->fault.detail = detail;

    return NGX_ERROR;
}
