package RegGc;

# Garbage collection through the admin location, for t/gc.t and
# t/gc_compat.t.
#
#   my $t = RegTest->new(delete => 1, RegGc::options());
#   my $report = run_gc($t, grace => 0, dry_run => 1, delete_untagged => 1);
#
# options(root => DIR) gives RegTest that store (default: one of its own)
# and a "location /admin/" with registry_admin on it; run_gc() POSTs /admin/gc (again
# while another job holds the store: 409), waits for the job to end and
# returns its report (a hashref), dying unless the job is "done".

use strict;
use warnings;

use Exporter 'import';
use File::Temp qw(tempdir);
use JSON::PP;
use Time::HiRes qw(sleep);

our @EXPORT_OK = qw(run_gc gc_job);

sub options {
    my (%o) = @_;

    my $root = $o{root}
               // tempdir('regtest-gc-store-XXXXXXXX', TMPDIR => 1,
                          CLEANUP => 1);

    return (root => $root,
            server_extra => "location /admin/ { registry_admin on; "
                            . "registry_root $root; }\n"
                            . ($o{server_extra} // ''));
}

# the finished job: {id, kind, state, report, ...}
sub gc_job {
    my ($t, %o) = @_;

    my @q = ('grace=' . ($o{grace} // 0));
    push @q, 'dry_run=1' if $o{dry_run};
    push @q, 'delete_untagged=1' if $o{delete_untagged};

    my $r;
    for (1 .. 600) {
        $r = $t->req('POST', '/admin/gc?' . join('&', @q));
        last unless $r->{status} == 409;
        sleep 0.1;
    }

    die "POST /admin/gc: $r->{status} $r->{content}\n"
        unless $r->{status} == 202;

    my $id = JSON::PP->new->decode($r->{content})->{id};

    for (1 .. 6000) {
        $r = $t->req('GET', "/admin/jobs/$id");
        die "GET /admin/jobs/$id: $r->{status} $r->{content}\n"
            unless $r->{status} == 200;
        my $j = JSON::PP->new->decode($r->{content});
        return $j if $j->{state} ne 'running';
        sleep 0.05;
    }

    die "gc job $id did not end\n";
}

sub run_gc {
    my ($t, %o) = @_;

    my $j = gc_job($t, %o);

    die "gc job $j->{id}: $j->{state} " . ($j->{error} // '') . "\n"
        unless $j->{state} eq 'done';

    return $j->{report};
}

1;
