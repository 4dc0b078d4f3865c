#!/usr/bin/perl

# registry_upload_expire: an upload untouched (no chunk, no state change)
# for longer than the limit answers 404 BLOB_UPLOAD_UNKNOWN (checked on
# access from its state file's mtime) and its _uploads/<id>/ directory is
# removed by a periodic sweep (every min(expire/2, 1h), at least 1 s).  A
# session that keeps receiving chunks lives on, however old it is; the
# default limit is 24h.

use strict;
use warnings;

use Test::More;
use File::Find;
use Time::HiRes qw(time sleep);

use lib 't/lib';
use RegTest;

sub start {
    my ($t, $name) = @_;
    my $r = $t->req('POST', "/v2/$name/blobs/uploads/");
    die "start upload: $r->{status} $r->{content}\n" unless $r->{status} == 202;
    return $r->{headers}{location};
}

sub patch {
    my ($t, $loc, $data) = @_;
    return $t->req('PATCH', $loc, content => $data,
                   headers => { 'Content-Type' => 'application/octet-stream' });
}

sub upload_dir {
    my ($t, $name, $loc) = @_;
    my ($id) = $loc =~ m{/([^/]+)$};
    return $t->root . "/docker/registry/v2/repositories/$name/_uploads/$id";
}

# sets the mtime of an upload directory and everything in it $age s back
sub age_upload {
    my ($dir, $age) = @_;
    my $when = time() - $age;
    my @paths;
    find(sub { push @paths, $File::Find::name }, $dir);
    utime($when, $when, @paths) == @paths or die "utime $dir: $!\n";
}

# expired: status, PATCH and PUT answer 404 BLOB_UPLOAD_UNKNOWN
sub is_expired {
    my ($t, $loc, $what) = @_;
    my $r = $t->req('GET', $loc);
    is($r->{status}, 404, "$what: status 404");
    is(RegTest::error_code($r), 'BLOB_UPLOAD_UNKNOWN', "$what: status BLOB_UPLOAD_UNKNOWN");
    $r = patch($t, $loc, 'more');
    is($r->{status}, 404, "$what: PATCH 404");
    is(RegTest::error_code($r), 'BLOB_UPLOAD_UNKNOWN', "$what: PATCH BLOB_UPLOAD_UNKNOWN");
    $r = $t->req('PUT', "$loc?digest=" . RegTest::digest('x'));
    is($r->{status}, 404, "$what: PUT 404");
}

# ---- default (24h), in parallel with the 2 s instance below ----

my $def = RegTest->new();
my $def_loc = start($def, 'exp/default');
patch($def, $def_loc, 'default session');

# an upload last touched 25 h ago is expired under the default; 23 h is not
my $old_loc = start($def, 'exp/default');
patch($def, $old_loc, 'old');
age_upload(upload_dir($def, 'exp/default', $old_loc), 25 * 3600);
is_expired($def, $old_loc, 'default, untouched 25 h');

my $young_loc = start($def, 'exp/default');
patch($def, $young_loc, 'young');
age_upload(upload_dir($def, 'exp/default', $young_loc), 23 * 3600);
my $r = $def->req('GET', $young_loc);
is($r->{status}, 204, 'default, untouched 23 h: alive');
is($r->{headers}{range}, '0-4', 'default, untouched 23 h: range');

# ---- registry_upload_expire 2s ----

my $t = RegTest->new(location_extra => 'registry_upload_expire 2s;');

my $idle = start($t, 'exp/idle/repo');
patch($t, $idle, 'idle chunk');
my $idle_dir = upload_dir($t, 'exp/idle/repo', $idle);
ok(-d $idle_dir, 'idle session directory exists');

my $polled = start($t, 'exp/polled');
patch($t, $polled, 'polled chunk');

my $busy = start($t, 'exp/busy');
my $busy_data = 'busy0';
patch($t, $busy, $busy_data);
my $busy_dir = upload_dir($t, 'exp/busy', $busy);

# 4 s: the busy session gets a chunk every second, the polled one only
# status requests (not a touch), the idle one nothing

my $t0 = time();
my $ok = 1;
for my $i (1 .. 4) {
    sleep($t0 + $i - time()) if $t0 + $i > time();
    my $c = "busy$i";
    $r = patch($t, $busy, $c);
    $busy_data .= $c;
    unless ($r->{status} == 202
            && $r->{headers}{range} eq '0-' . (length($busy_data) - 1))
    {
        diag("busy PATCH $i after " . sprintf('%.1f', time() - $t0) . " s: "
             . "$r->{status} $r->{content}");
        $ok = 0;
    }
    $t->req('GET', $polled);
}
ok($ok, 'a session touched every second keeps accepting chunks');

is_expired($t, $idle, 'untouched > 2 s');
is_expired($t, $polled, 'only status requests for > 2 s');

# the sweep removes the directory
my $gone = 0;
for (1 .. 50) {
    $gone = !-e $idle_dir;
    last if $gone;
    sleep 0.1;
}
ok($gone, 'expired session directory removed');

$r = $t->req('GET', $busy);
is($r->{status}, 204, 'busy session alive');
is($r->{headers}{range}, '0-' . (length($busy_data) - 1), 'busy session offset');
ok(-d $busy_dir, 'busy session directory kept by the sweep');

$r = $t->req('PUT', "$busy?digest=" . RegTest::digest($busy_data));
is($r->{status}, 201, 'busy session completes');
ok($t->req('GET', '/v2/exp/busy/blobs/' . RegTest::digest($busy_data))->{content}
   eq $busy_data, 'busy session blob bytes');

# expiry does not touch published blobs
my $pd = $t->push_blob('exp/idle/repo', 'published blob');
sleep 3;
is($t->req('GET', "/v2/exp/idle/repo/blobs/$pd")->{content}, 'published blob',
   'a published blob outlives the expiry');

$t->stop();

# ---- the default instance: its session survived the same seconds ----

ok(time() - $t0 > 4, 'default session waited more than 4 s');
$r = $def->req('GET', $def_loc);
is($r->{status}, 204, 'default: session survives a few seconds');
is($r->{headers}{range}, '0-14', 'default: range');
ok(-d upload_dir($def, 'exp/default', $def_loc), 'default: directory kept');
is($def->req('GET', $old_loc)->{status}, 404, 'default: 25 h old session still gone');

$def->stop();

done_testing();
