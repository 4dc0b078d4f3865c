#!/usr/bin/perl

# registry_admin: the admin location and its jobs.  POST <admin>/<kind>
# starts a job in a thread (202, its id, Location: jobs/<id>); GET
# jobs/<id> answers its progress from shared memory while it runs, then its
# report, from _ngx_jobs/<id>.json, in any worker; GET jobs lists the
# recent ones.  One job at a time per store: 409 while one runs, in this
# nginx (the shared slot) or in another (the lease file), unless that lease
# is stale.  A job stops, "cancelled", when its worker exits (a reload);
# a worker killed -9 leaves a slot and a lease that the next job takes
# over.  purge-uploads reports exactly the stale sessions it removed.
# bin/registry-ctl end to end.  Slow jobs are purges over 60000 empty
# repositories (seconds, never a sub-second margin).

use strict;
use warnings;

use Test::More;
use File::Find;
use File::Path qw(make_path);
use File::Spec;
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

use lib 't/lib';
use RegTest;

my $JSON = JSON::PP->new->canonical;
my $ID = qr/^\d{8}T\d{6}Z-[0-9a-f]{8}$/;
my $TIME = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/;
my $CTL = "$RegTest::REPO/bin/registry-ctl";
my $BALLAST = 60000;

# the store in memory where there is some: the ballast's 120000 directories
# take a minute to remove from a disk mounted with "discard"

my $root = tempdir('regtest-admin-XXXXXXXX', CLEANUP => 1,
                   DIR => (-d '/dev/shm' && -w _) ? '/dev/shm'
                                                  : File::Spec->tmpdir);

my $t = RegTest->new(
    root => $root,
    workers => 2,
    listen_extra => 'reuseport',
    expect_in_log => qr/exited on signal 9/,
    server_extra => <<"EOF");
        location /_registry/ {
            registry_admin on;
            registry_root $root;
            add_header X-Worker \$pid always;
        }

        location /_closed/ {
            registry_admin on;
            registry_root $root;
            deny all;
        }
EOF

my $v2 = $t->root . '/docker/registry/v2';
my $jobs_dir = "$v2/_ngx_jobs";

sub decode {
    my ($r) = @_;
    return eval { $JSON->decode($r->{content}) } || {};
}

sub admin_error {
    my ($r, $status, $code, $name) = @_;
    is($r->{status}, $status, "$name: status");
    is(RegTest::error_code($r), $code, "$name: code");
    like($r->{headers}{'content-type'} // '', qr{^application/json},
         "$name: JSON");
}

sub post_job {
    my ($query) = @_;
    return $t->req('POST', "/_registry/$query");
}

# polls the job until it is no longer running (120 s at most)
sub wait_job {
    my ($id) = @_;
    my $j = {};
    for (1 .. 1200) {
        $j = decode($t->req('GET', "/_registry/jobs/$id"));
        return $j if ($j->{state} // '') ne 'running';
        sleep 0.1;
    }
    return $j;
}

sub start_upload {
    my ($name, $bytes) = @_;
    my $r = $t->req('POST', "/v2/$name/blobs/uploads/");
    die "start upload: $r->{status}\n" unless $r->{status} == 202;
    my $loc = $r->{headers}{location};
    $r = $t->req('PATCH', $loc, content => $bytes,
                 headers => { 'Content-Type' => 'application/octet-stream' });
    die "patch: $r->{status}\n" unless $r->{status} == 202;
    my ($id) = $loc =~ m{/([^/]+)$};
    return ($loc, $id, "$v2/repositories/$name/_uploads/$id");
}

# the mtimes of a tree $age seconds back
sub age {
    my ($path, $age) = @_;
    my $when = time() - $age;
    my @paths;
    find(sub { push @paths, $File::Find::name }, $path);
    utime($when, $when, @paths) == @paths or die "utime $path: $!\n";
}

sub spew {
    my ($path, $bytes) = @_;
    open my $fh, '>', $path or die "$path: $!\n";
    print $fh $bytes;
    close $fh;
}

# runs registry-ctl against the admin location: exit status, stdout, stderr
sub ctl {
    my (@args) = @_;
    my $out = $t->dir . '/ctl.out';
    my $err = $t->dir . '/ctl.err';
    my $url = $t->url('/_registry');
    system("'$CTL' --url '$url' @args >'$out' 2>'$err' </dev/null");
    return ($? >> 8, RegTest::slurp($out), RegTest::slurp($err));
}

# the job running now (from the list), or undef
sub running_job {
    my $list = decode($t->req('GET', '/_registry/jobs'));
    my ($j) = grep { $_->{state} eq 'running' } @{ $list->{jobs} || [] };
    return $j;
}

###############################################################################

# ---- refused requests ----

admin_error(post_job('purge-uploads?dry_run=1'), 400, 'OPTION_UNKNOWN',
            'an option purge-uploads has not');
admin_error(post_job('purge-uploads?older_than=soon'), 400,
            'OPTION_INVALID', 'a malformed time');
admin_error(post_job('purge-uploads?older_than='), 400, 'OPTION_INVALID',
            'an empty time');
is(decode(post_job('purge-uploads?older_than=soon'))->{errors}[0]{detail}
   {option}, 'older_than', 'the error names the option');
admin_error(post_job('defragment'), 404, 'NOT_FOUND', 'an unknown kind');
admin_error($t->req('GET', '/_registry/purge-uploads'), 405, 'UNSUPPORTED',
            'GET of a kind');
admin_error($t->req('POST', '/_registry/jobs'), 405, 'UNSUPPORTED',
            'POST jobs');
admin_error($t->req('GET', '/_registry/jobs/20200101T000000Z-00000000'), 404,
            'JOB_UNKNOWN', 'an unknown job');
admin_error($t->req('GET', '/_registry/jobs/20200101T000000Z-0000000g'),
            404, 'JOB_UNKNOWN', 'a job id that is no id');
admin_error($t->req('POST', '/_closed/purge-uploads'), 403, 'DENIED',
            'deny all: nginx refuses');
ok(!-e $jobs_dir, 'no job was started by any of these');

# ---- purge-uploads: exactly the stale sessions ----

my (undef, $a_id, $a_dir) = start_upload('adm/one', 'aaaa');
my (undef, $b_id, $b_dir) = start_upload('adm/two', 'bbbbbbbb');
my ($c_loc, $c_id, $c_dir) = start_upload('adm/one', 'c');
age($a_dir, 7200);
age($b_dir, 7200);

make_path("$v2/_ngx_tmp");
spew("$v2/_ngx_tmp/left-by-a-crash", '12345');
age("$v2/_ngx_tmp/left-by-a-crash", 7200);

my $r = post_job('purge-uploads?older_than=1h');
is($r->{status}, 202, 'purge-uploads: 202');
my $j = decode($r);
like($j->{id} // '', $ID, 'purge-uploads: an id');
is($j->{kind}, 'purge-uploads', 'purge-uploads: kind');
is($j->{state}, 'running', 'purge-uploads: running');
is($r->{headers}{location}, "/_registry/jobs/$j->{id}",
   'purge-uploads: Location');

my $purge = wait_job($j->{id});
is($purge->{state}, 'done', 'purge-uploads: done');
is($purge->{id}, $j->{id}, 'report: id');
is($purge->{kind}, 'purge-uploads', 'report: kind');
like($purge->{started} // '', $TIME, 'report: started');
like($purge->{finished} // '', $TIME, 'report: finished');
is($purge->{report}{older_than}, 3600, 'report: older_than');
is_deeply([ sort { $a->{id} cmp $b->{id} } @{ $purge->{report}{uploads} } ],
          [ sort { $a->{id} cmp $b->{id} }
            { repository => 'adm/one', id => $a_id, bytes => 4 },
            { repository => 'adm/two', id => $b_id, bytes => 8 } ],
          'report: the two stale sessions, nothing else');
is($purge->{report}{removed}, 2, 'report: removed');
is($purge->{report}{bytes}, 12, 'report: bytes');
is($purge->{report}{temp_files}, 1, 'report: temporary files');
is($purge->{report}{temp_bytes}, 5, 'report: temporary bytes');
ok(!-e $a_dir && !-e $b_dir, 'the stale sessions are gone');
ok(-d $c_dir, 'the fresh session is kept');
is($t->req('GET', $c_loc)->{status}, 204, 'the fresh session lives on');
ok(!-e "$v2/_ngx_tmp/left-by-a-crash", 'the stale temporary file is gone');
ok(-f "$jobs_dir/$j->{id}.json", 'the report is a file of the store');
ok(!-e "$jobs_dir/lease", 'the lease is dropped');

# ---- registry-ctl ----

my (undef, $d_id, $d_dir) = start_upload('adm/ctl', 'dd');
age($d_dir, 7200);

my ($rc, $out, $err) = ctl('purge-uploads', '--older-than', '1h');
is($rc, 0, 'registry-ctl purge-uploads: exit 0');
my $ctl_job = eval { $JSON->decode($out) } || {};
is($ctl_job->{state}, 'done', 'registry-ctl: prints the final report');
is_deeply($ctl_job->{report}{uploads},
          [ { repository => 'adm/ctl', id => $d_id, bytes => 2 } ],
          'registry-ctl: the report lists the session it removed');
unlike($out, qr/\r/, 'registry-ctl: no progress display off a terminal');

($rc, $out) = ctl('job', $ctl_job->{id});
is($rc, 0, 'registry-ctl job: exit 0');
is((eval { $JSON->decode($out) } || {})->{report}{removed}, 1,
   'registry-ctl job: the report');

($rc, $out) = ctl('purge-uploads');
is($rc, 0, 'registry-ctl purge-uploads, default age: exit 0');
is((eval { $JSON->decode($out) } || {})->{report}{older_than}, 86400,
   'by default registry_upload_expire');

($rc, undef, $err) = ctl('purge-uploads', '--older-than', 'yesterday');
is($rc, 2, 'registry-ctl: a malformed option is exit 2');
like($err, qr/OPTION_INVALID/, 'registry-ctl: and says why');
($rc) = ctl('gc', '--repair');
is($rc, 2, 'registry-ctl: an option of another kind is exit 2');
($rc, undef, $err) = ctl('job', '20200101T000000Z-00000000');
is($rc, 2, 'registry-ctl job: an unknown job is exit 2');
like($err, qr/JOB_UNKNOWN/, 'registry-ctl job: says so');

# ---- leases of other hosts ----

my $other = '20200101T000000Z-0badf00d';

spew("$jobs_dir/lease", $JSON->encode({ host => 'elsewhere.example',
                                        pid => 4242, id => $other,
                                        kind => 'gc', started => time() }));

$r = post_job('purge-uploads');
admin_error($r, 409, 'JOB_RUNNING', 'a fresh lease of another host');
is(decode($r)->{errors}[0]{detail}{id}, $other, '409 names its job');
is(decode($r)->{errors}[0]{detail}{host}, 'elsewhere.example',
   '409 names its host');
ok(-f "$jobs_dir/lease", 'the fresh lease is left alone');

($rc, undef, $err) = ctl('purge-uploads');
is($rc, 2, 'registry-ctl: 409 is exit 2');
like($err, qr/another job runs: \Q$other\E/, 'registry-ctl: names the job');

# that job stopped refreshing its lease a while ago, and it had a report;
# reports beyond the last 50 go

spew("$jobs_dir/$other.json",
     $JSON->encode({ id => $other, kind => 'gc', state => 'running',
                     started => '2020-01-01T00:00:00Z' }));
age("$jobs_dir/lease", 3600);

for my $n (1 .. 55) {
    my $old = sprintf('20190101T0000%02dZ-0000%04x', $n % 60, $n);
    spew("$jobs_dir/$old.json", $JSON->encode({ id => $old, kind => 'gc',
                                                state => 'done' }));
}

$r = post_job('purge-uploads');
is($r->{status}, 202, 'a stale lease is taken over');
$j = wait_job(decode($r)->{id});
is($j->{state}, 'done', 'the job after the takeover is done');

my $abandoned = decode($t->req('GET', "/_registry/jobs/$other"));
is($abandoned->{state}, 'failed', "the stale lease's job is failed");
like($abandoned->{error} // '', qr/abandoned/, '... abandoned');
like($abandoned->{finished} // '', $TIME, '... with an end');
ok(!-e "$jobs_dir/lease", 'the lease is dropped again');

opendir(my $dh, $jobs_dir) or die "$jobs_dir: $!\n";
my @reports = sort grep { /\.json$/ } readdir $dh;
closedir $dh;
is(scalar @reports, 50, 'the last 50 reports are kept');
ok(!grep({ /^20190101T000001Z/ } @reports), 'the oldest went');
is($reports[-1], "$j->{id}.json", 'the newest is kept');

my $list = decode($t->req('GET', '/_registry/jobs'));
is(scalar @{ $list->{jobs} }, 50, 'GET jobs: the recent jobs');
is($list->{jobs}[0]{id}, $j->{id}, 'GET jobs: newest first');
is_deeply([ map { $_->{id} } @{ $list->{jobs} } ],
          [ sort { $b cmp $a } map { $_->{id} } @{ $list->{jobs} } ],
          'GET jobs: in order');
is_deeply([ sort keys %{ $list->{jobs}[0] } ],
          [ qw(finished id kind started state) ], 'GET jobs: the fields');

# ---- a slow job: 60000 repositories to walk ----

make_path("$v2/repositories/ballast");
system('bash', '-c', "cd '$v2/repositories/ballast' && "
                     . "mkdir -p r{1..$BALLAST}/_uploads") == 0
    or die "ballast: $?\n";

$r = post_job('purge-uploads');
is($r->{status}, 202, 'slow job: 202');
my $slow = decode($r)->{id};

$r = post_job('purge-uploads?older_than=1h');
admin_error($r, 409, 'JOB_RUNNING', 'a second job while one runs');
is(decode($r)->{errors}[0]{detail}{id}, $slow, '409 names the running job');

($rc, undef, $err) = ctl('purge-uploads');
is($rc, 2, 'registry-ctl while a job runs: exit 2');

my $lease = eval { $JSON->decode(RegTest::slurp("$jobs_dir/lease")) } || {};
is($lease->{id}, $slow, 'the lease names the running job');
ok($lease->{host} && $lease->{pid} && $lease->{kind} eq 'purge-uploads',
   'the lease names its host, pid and kind');

# both workers answer for it while it runs, and after

my %seen;
my $shape_ok = 1;
for (1 .. 200) {
    $r = $t->req('GET', "/_registry/jobs/$slow");
    $j = decode($r);
    last if ($j->{state} // '') ne 'running';
    $seen{ $r->{headers}{'x-worker'} } = $j;
    $shape_ok &&= $r->{status} == 200 && $j->{id} eq $slow
                  && $j->{kind} eq 'purge-uploads'
                  && ($j->{phase} eq 'repositories'
                      || $j->{phase} eq 'uploads' && $j->{total} > $BALLAST
                         && $j->{done} <= $j->{total})
                  && $j->{started} =~ $TIME;
    last if keys %seen == 2;
}
is(scalar keys %seen, 2, 'running: both workers answer');
ok($shape_ok, 'running: id, kind, phase, done of total, started');
is_deeply([ sort keys %{ (values %seen)[0] || {} } ],
          [ qw(done id kind phase started state total) ],
          'running: the fields');

$j = wait_job($slow);
is($j->{state}, 'done', 'slow job: done');
is($j->{report}{removed}, 0, 'slow job: nothing stale');

%seen = ();
my $same = 1;
for (1 .. 100) {
    $r = $t->req('GET', "/_registry/jobs/$slow");
    $same &&= $r->{content} eq $t->req('GET', "/_registry/jobs/$slow")
                                  ->{content};
    $seen{ $r->{headers}{'x-worker'} } = $r->{content};
    last if keys %seen == 2;
}
is(scalar keys %seen, 2, 'done: both workers answer');
is((values %seen)[0], (values %seen)[1], 'done: with the same report');

# a job's phase is named from its first answer on, not a tick later:
# a dry gc over the ballast, polled while it runs

$r = post_job('gc?dry_run=1');
is($r->{status}, 202, 'gc over the ballast: 202');
my $gc = decode($r)->{id};
my %gc_phase = map { $_ => 1 } qw(mark tombstones blobs links);
my ($running, $named) = (0, 1);
for (1 .. 2000) {
    $j = decode($t->req('GET', "/_registry/jobs/$gc"));
    last if ($j->{state} // '') ne 'running';
    $running++;
    $named &&= $gc_phase{ $j->{phase} // '' };
}
ok($running, 'gc over the ballast: seen running');
ok($named, 'gc: every answer while it runs names a phase of gc');
is(wait_job($gc)->{state}, 'done', 'gc over the ballast: done');

# on a terminal (script(1) gives it one), registry-ctl shows the progress
# on one line

my $typescript = $t->dir . '/ctl.tty';
my $url = $t->url('/_registry');
system("script -qefc \"'$CTL' --url '$url' purge-uploads\" '$typescript'"
       . ' >/dev/null </dev/null');
is($? >> 8, 0, 'registry-ctl on a terminal: exit 0');
$typescript = RegTest::slurp($typescript);
like($typescript, qr{\r\d{8}T\d{6}Z-[0-9a-f]{8}\ purge-uploads:
                      \ (?:repositories|uploads)\ \d+/\d+}x,
     'registry-ctl on a terminal: a progress line')
    or diag($typescript);
like($typescript, qr/"state":"done"/, 'registry-ctl on a terminal: the report');

# ---- a reload cancels the job; its report outlives the reload ----

# a job that lasts: a rehash of 256 KiB at 16 KiB/s takes 16 s (a walk of
# the ballast on a tmpfs can end before a reload reaches the worker)
my $big = 'x' x (256 * 1024);
$t->push_blob('cancel/me', $big);

my $pid = fork();
die "fork: $!\n" unless defined $pid;
if ($pid == 0) {
    my ($code, $o) = ctl('fsck', '--rehash', '--rate', '16k');
    spew($t->dir . '/ctl.bg', $o);
    POSIX::_exit($code);
}

my $bg;
for (1 .. 100) {
    $bg = running_job();
    last if $bg;
    sleep 0.1;
}
ok($bg, 'registry-ctl started a job');

# the old worker exits once its job has stopped, and registry-ctl with it

$t->reload(wait => 0);

waitpid($pid, 0);
is($? >> 8, 1, 'registry-ctl: a cancelled job is exit 1');
$t->reload_done();
my $cancelled = eval { $JSON->decode(RegTest::slurp($t->dir . '/ctl.bg')) }
                || {};
is($cancelled->{state}, 'cancelled', 'registry-ctl: prints it cancelled');

$j = decode($t->req('GET', '/_registry/jobs/' . ($bg ? $bg->{id} : 'none')));
is($j->{state}, 'cancelled', 'after the reload: the report says cancelled');
cmp_ok($j->{report}{bytes_rehashed} // -1, '<', length $big,
       'after the reload: with its report, cut short');
is(decode($t->req('GET', "/_registry/jobs/$slow"))->{state}, 'done',
   'after the reload: an earlier report');

# ---- a worker killed -9 while its job runs ----

$r = post_job('purge-uploads');
is($r->{status}, 202, 'a job for the kill');
my $killed = decode($r)->{id};

my $owner = 0;
for (1 .. 100) {
    my $doc = eval { $JSON->decode(RegTest::slurp("$jobs_dir/$killed.json")) }
              || {};
    $owner = $doc->{pid} // 0;
    last if $owner;
    sleep 0.1;
}
ok($owner, 'the running report names its worker');

my @before = $t->pids_of_workers;
kill 'KILL', $owner;

my $respawned = 0;
for (1 .. 100) {
    my @now = $t->pids_of_workers;
    $respawned = @now == 2 && !grep { $_ == $owner } @now;
    last if $respawned;
    sleep 0.1;
}
ok($respawned, 'the master starts another worker');

$r = post_job('purge-uploads');
is($r->{status}, 202, "the killed worker's slot and lease are taken over");
$j = wait_job(decode($r)->{id});
is($j->{state}, 'done', 'the next job is done');

$j = decode($t->req('GET', "/_registry/jobs/$killed"));
is($j->{state}, 'failed', "the killed worker's job is failed");
like($j->{error} // '', qr/abandoned/, '... abandoned');

# rm, faster than File::Path (the temporary directory's cleanup)

system('rm', '-rf', "$v2/repositories/ballast") == 0 or die "rm: $?\n";

$t->stop();

done_testing();
