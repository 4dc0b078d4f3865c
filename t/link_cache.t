#!/usr/bin/perl

# registry_link_cache: each worker remembers the repository links it found
# (layer and revision links, tags' current links).
# - two workers behind reuseport, valid=600s: a DELETE (blob, manifest by
#   digest, tag) or a tag write (PUT by tag, ?tag=) through either worker
#   is seen at once by both (the shared generation counter), also after a
#   reload; whatever is pushed again is served again at once;
# - the cache is really used: links changed by hand (as another program
#   would) are not seen until a change through nginx bumps the generation;
# - valid=1s and the default (no directive): a change by hand is seen
#   within a few seconds; "off": at once;
# - max=1, every link in one slot: answers stay right across repositories;
# - the directive's syntax, checked with nginx -t.

use strict;
use warnings;

use Test::More;
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);

use lib 't/lib';
use RegTest;
use RegTools qw(run_cmd spew free_port);

sub check_error { RegTest::check_error(@_) }

sub tag_link {
    my ($t, $name, $tag) = @_;
    return $t->root . "/docker/registry/v2/repositories/$name/_manifests/"
           . "tags/$tag/current/link";
}

# rewrites a link as another program on the same store would: a new file
# renamed over the old one
sub write_link {
    my ($file, $digest) = @_;
    spew("$file.new", $digest);
    rename("$file.new", $file) or die "rename $file: $!\n";
}

# requests $path, each on a new connection, at least $min times and until
# every worker of $t has answered (at most 200 requests); the responses
# keyed by the pid of the worker that served them (X-Pid)
sub on_both_workers {
    my ($t, $method, $path, $min) = @_;

    my $workers = () = $t->pids_of_workers;
    my %by;

    for my $i (1 .. 200) {
        my $r = $t->req($method, $path);
        push @{ $by{ $r->{headers}{'x-pid'} // 'none' } }, $r;
        last if $i >= ($min // 1) && keys %by >= $workers;
    }

    return \%by;
}

# why a response is not what %want says, '' when it is
sub mismatch {
    my ($r, %want) = @_;

    my @why;

    push @why, "status $r->{status}"
        if defined $want{status} && $r->{status} != $want{status};
    push @why, 'code ' . RegTest::error_code($r)
        if defined $want{code} && RegTest::error_code($r) ne $want{code};
    push @why, 'other content (' . length($r->{content}) . ' bytes)'
        if defined $want{content} && $r->{content} ne $want{content};
    push @why, 'digest ' . ($r->{headers}{'docker-content-digest'} // 'none')
        if defined $want{digest}
           && ($r->{headers}{'docker-content-digest'} // '') ne $want{digest};

    return join(', ', @why);
}

# two assertions: every worker answered $method $path (n => at least that
# many requests, 30 unless told), and every answer is what %want says
# (status, code, content, digest)
sub everywhere {
    my ($t, $method, $path, $name, %want) = @_;

    my $by = on_both_workers($t, $method, $path, delete $want{n} // 30);
    my @bad;

    for my $pid (sort keys %$by) {
        for my $r (@{ $by->{$pid} }) {
            my $why = mismatch($r, %want);
            push @bad, "pid $pid: $why" if $why;
        }
    }

    is_deeply([sort { $a <=> $b } grep { /^\d+$/ } keys %$by],
              [$t->pids_of_workers], "$name: every worker answered");
    is(join("\n", @bad), '', "$name: every answer");
}

# the first GETs of $path by every worker, which then remember its links
sub prime {
    my ($t, $path, $name, %want) = @_;
    everywhere($t, 'GET', $path, "prime $name", status => 200, n => 1, %want);
}

# GETs $path every 0.1 s until $done->(response), at most $limit seconds
# after $since; the seconds since $since it took, undef if it never did
sub poll_until {
    my ($t, $path, $since, $limit, $done) = @_;

    while (time - $since < $limit) {
        my $r = $t->req('GET', $path);
        return time - $since if $done->($r);
        sleep 0.1;
    }

    return undef;
}

###############################################################################
# two workers, answers kept for 10 minutes: only a change through nginx
# can make them stale.  The table is direct-mapped: two links of a test in
# one slot would evict a primed answer (about 1 run in 300 with 1,000
# slots), so it gets many.

my $t = RegTest->new(delete => 1, workers => 2, listen_extra => 'reuseport',
                     location_extra => 'registry_link_cache max=65536 '
                                       . 'valid=600s; '
                                       . 'add_header X-Pid $pid always;');

my @workers = $t->pids_of_workers;
is(scalar @workers, 2, 'two workers');

# a blob

my $blob = 'a layer deleted while both workers remember it';
my $bd = $t->push_blob('lc/del', $blob);

prime($t, "/v2/lc/del/blobs/$bd", 'blob', content => $blob);
everywhere($t, 'HEAD', "/v2/lc/del/blobs/$bd", 'prime blob HEAD',
           status => 200, n => 1);

is($t->req('DELETE', "/v2/lc/del/blobs/$bd")->{status}, 202, 'delete blob');

everywhere($t, 'GET', "/v2/lc/del/blobs/$bd", 'deleted blob GET',
           status => 404, code => 'BLOB_UNKNOWN');
everywhere($t, 'HEAD', "/v2/lc/del/blobs/$bd", 'deleted blob HEAD',
           status => 404);

# pushed again: served again at once (nothing negative was remembered)

$t->push_blob('lc/del', $blob);
everywhere($t, 'GET', "/v2/lc/del/blobs/$bd", 'blob pushed again',
           status => 200, content => $blob);

# a manifest by digest, with its two tags

my $img = $t->push_image('lc/del', 't1');
is($t->push_manifest('lc/del', 't2', $img->{manifest}, $img->{type})
   ->{status}, 201, 'second tag');

for my $ref ($img->{digest}, 't1', 't2') {
    prime($t, "/v2/lc/del/manifests/$ref", "manifest $ref",
          content => $img->{manifest}, digest => $img->{digest});
}
everywhere($t, 'HEAD', '/v2/lc/del/manifests/t1', 'prime manifest HEAD',
           status => 200, n => 1);

is($t->req('DELETE', "/v2/lc/del/manifests/$img->{digest}")->{status}, 202,
   'delete manifest by digest');

for my $ref ($img->{digest}, 't1', 't2') {
    everywhere($t, 'GET', "/v2/lc/del/manifests/$ref",
               "deleted manifest, GET $ref",
               status => 404, code => 'MANIFEST_UNKNOWN');
}
everywhere($t, 'HEAD', '/v2/lc/del/manifests/t1',
           'deleted manifest, HEAD t1', status => 404);

is($t->push_manifest('lc/del', 't1', $img->{manifest}, $img->{type})
   ->{status}, 201, 'manifest pushed again');
for my $ref ($img->{digest}, 't1') {
    everywhere($t, 'GET', "/v2/lc/del/manifests/$ref",
               "manifest pushed again, GET $ref",
               status => 200, content => $img->{manifest},
               digest => $img->{digest});
}
everywhere($t, 'GET', '/v2/lc/del/manifests/t2',
           'manifest pushed again, t2 stays deleted',
           status => 404, code => 'MANIFEST_UNKNOWN');

# a tag only

my $tagged = $t->push_image('lc/tag', 'a');
$t->push_manifest('lc/tag', 'b', $tagged->{manifest}, $tagged->{type});

prime($t, "/v2/lc/tag/manifests/$_", "tag $_",
      content => $tagged->{manifest}) for 'a', 'b';

is($t->req('DELETE', '/v2/lc/tag/manifests/a')->{status}, 202, 'delete tag');

everywhere($t, 'GET', '/v2/lc/tag/manifests/a', 'deleted tag',
           status => 404, code => 'MANIFEST_UNKNOWN');
everywhere($t, 'GET', '/v2/lc/tag/manifests/b', 'other tag kept',
           status => 200, content => $tagged->{manifest},
           digest => $tagged->{digest});
everywhere($t, 'GET', "/v2/lc/tag/manifests/$tagged->{digest}",
           'manifest of the deleted tag kept',
           status => 200, content => $tagged->{manifest});

# a tag moved by a PUT by tag, and back by a PUT by digest with ?tag=

my $x = $t->push_image('lc/mv', 'mv');
my $y = $t->push_image('lc/mv', 'y');

prime($t, '/v2/lc/mv/manifests/mv', 'tag mv on X',
      content => $x->{manifest}, digest => $x->{digest});

is($t->push_manifest('lc/mv', 'mv', $y->{manifest}, $y->{type})->{status},
   201, 'tag mv moved to Y');
everywhere($t, 'GET', '/v2/lc/mv/manifests/mv', 'tag mv serves Y',
           status => 200, content => $y->{manifest}, digest => $y->{digest});
everywhere($t, 'HEAD', '/v2/lc/mv/manifests/mv', 'tag mv HEAD names Y',
           status => 200, digest => $y->{digest});

my $r = $t->req('PUT', "/v2/lc/mv/manifests/$x->{digest}?tag=mv",
                headers => { 'Content-Type' => $x->{type} },
                content => $x->{manifest});
is($r->{status}, 201, 'tag mv moved back to X with ?tag=');
everywhere($t, 'GET', '/v2/lc/mv/manifests/mv', 'tag mv serves X again',
           status => 200, content => $x->{manifest}, digest => $x->{digest});

###############################################################################
# the cache is really used: links changed behind nginx's back are not seen
# while the answers are remembered, and are once a change through nginx
# bumps the generation

my $kept = 'a layer whose link is removed by hand';
my $kd = $t->push_blob('lc/hand', $kept);
my $old = $t->push_image('lc/hand', 'latest');
my $new = $t->push_image('lc/hand', 'new');
$t->push_image('lc/hand', 'unrelated');

prime($t, "/v2/lc/hand/blobs/$kd", 'blob', content => $kept);
prime($t, '/v2/lc/hand/manifests/latest', 'tag latest',
      content => $old->{manifest}, digest => $old->{digest});

ok(unlink($t->layer_link('lc/hand', $kd)), 'layer link removed by hand');
write_link(tag_link($t, 'lc/hand', 'latest'), $new->{digest});

everywhere($t, 'GET', "/v2/lc/hand/blobs/$kd",
           'link removed by hand: blob still served from the cache',
           status => 200, content => $kept);
everywhere($t, 'GET', '/v2/lc/hand/manifests/latest',
           'tag rewritten by hand: old manifest still served from the cache',
           status => 200, content => $old->{manifest},
           digest => $old->{digest});

is($t->req('DELETE', '/v2/lc/hand/manifests/unrelated')->{status}, 202,
   'an unrelated tag deleted through nginx');

everywhere($t, 'GET', "/v2/lc/hand/blobs/$kd",
           'after a DELETE: the blob removed by hand is gone',
           status => 404, code => 'BLOB_UNKNOWN');
everywhere($t, 'GET', '/v2/lc/hand/manifests/latest',
           'after a DELETE: the tag rewritten by hand serves its new manifest',
           status => 200, content => $new->{manifest},
           digest => $new->{digest});

###############################################################################
# a reload: the new workers remember, and still see a DELETE at once

my %before = map { $_ => 1 } $t->pids_of_workers;
my @after = $t->reload;
is(scalar @after, 2, 'reload: two new workers');
is(scalar(grep { $before{$_} } @after), 0, 'reload: the workers were replaced');

my $rb = 'a layer deleted after a reload';
my $rd = $t->push_blob('lc/reload', $rb);
my $ri = $t->push_image('lc/reload', 'r');

prime($t, "/v2/lc/reload/blobs/$rd", 'blob after reload', content => $rb);
prime($t, '/v2/lc/reload/manifests/r', 'tag after reload',
      content => $ri->{manifest});

is($t->req('DELETE', "/v2/lc/reload/blobs/$rd")->{status}, 202,
   'reload: delete blob');
is($t->req('DELETE', '/v2/lc/reload/manifests/r')->{status}, 202,
   'reload: delete tag');

everywhere($t, 'GET', "/v2/lc/reload/blobs/$rd", 'reload: deleted blob',
           status => 404, code => 'BLOB_UNKNOWN');
everywhere($t, 'GET', '/v2/lc/reload/manifests/r', 'reload: deleted tag',
           status => 404, code => 'MANIFEST_UNKNOWN');

$t->stop;

###############################################################################
# valid=1s: a change made by another program is seen within about that

$t = RegTest->new(delete => 1,
                  location_extra => 'registry_link_cache max=100 valid=1s;');

{
    my $b1 = 'a layer unlinked by hand under valid=1s';
    my $d1 = $t->push_blob('lc/valid', $b1);

    my $since = time;
    is($t->req('GET', "/v2/lc/valid/blobs/$d1")->{status}, 200,
       'valid=1s: blob read once');
    ok(unlink($t->layer_link('lc/valid', $d1)), 'valid=1s: link removed');
    is($t->req('GET', "/v2/lc/valid/blobs/$d1")->{status}, 200,
       'valid=1s: still served right after (remembered)');

    my $took = poll_until($t, "/v2/lc/valid/blobs/$d1", $since, 3,
                          sub { $_[0]{status} == 404 });
    ok(defined $took, 'valid=1s: removed link seen within 3 s')
        or diag('still served after 3 s');
    cmp_ok($took // 0, '>=', 0.5, 'valid=1s: not before valid= passed');

    my $p1 = $t->push_image('lc/valid', 'v');
    my $p2 = $t->push_image('lc/valid', 'w');

    $since = time;
    is($t->req('GET', '/v2/lc/valid/manifests/v')->{content}, $p1->{manifest},
       'valid=1s: tag read once');
    write_link(tag_link($t, 'lc/valid', 'v'), $p2->{digest});
    is($t->req('GET', '/v2/lc/valid/manifests/v')->{content}, $p1->{manifest},
       'valid=1s: tag rewritten by hand, old manifest right after');

    $took = poll_until($t, '/v2/lc/valid/manifests/v', $since, 3,
                       sub { $_[0]{content} eq $p2->{manifest} });
    ok(defined $took, 'valid=1s: rewritten tag seen within 3 s')
        or diag('still the old manifest after 3 s');
    cmp_ok($took // 0, '>=', 0.5, 'valid=1s: tag not before valid= passed');
}

$t->stop;

###############################################################################
# registry_link_cache off: every link read from the disk

$t = RegTest->new(delete => 1, location_extra => 'registry_link_cache off;');

{
    my $b1 = 'a layer unlinked by hand, no cache';
    my $d1 = $t->push_blob('lc/off', $b1);
    my $p1 = $t->push_image('lc/off', 'o');
    my $p2 = $t->push_image('lc/off', 'p');

    for (1 .. 5) {
        $t->req('GET', "/v2/lc/off/blobs/$d1");
        $t->req('GET', '/v2/lc/off/manifests/o');
    }

    ok(unlink($t->layer_link('lc/off', $d1)), 'off: link removed by hand');
    check_error($t->req('GET', "/v2/lc/off/blobs/$d1"), 404, 'BLOB_UNKNOWN',
                'off: removed link seen by the next GET');

    write_link(tag_link($t, 'lc/off', 'o'), $p2->{digest});
    $r = $t->req('GET', '/v2/lc/off/manifests/o');
    is($r->{content}, $p2->{manifest},
       'off: tag rewritten by hand seen by the next GET');
    is($r->{headers}{'docker-content-digest'}, $p2->{digest},
       'off: digest of the rewritten tag');
}

$t->stop;

###############################################################################
# no directive: on, valid=1s

$t = RegTest->new(delete => 1);

{
    my $b1 = 'a layer unlinked by hand, default cache';
    my $d1 = $t->push_blob('lc/default', $b1);

    my $since = time;
    is($t->req('GET', "/v2/lc/default/blobs/$d1")->{status}, 200,
       'default: blob read once');
    ok(unlink($t->layer_link('lc/default', $d1)), 'default: link removed');
    is($t->req('GET', "/v2/lc/default/blobs/$d1")->{status}, 200,
       'default: still served right after (the cache is on)');
    ok(defined poll_until($t, "/v2/lc/default/blobs/$d1", $since, 3,
                          sub { $_[0]{status} == 404 }),
       'default: removed link seen within 3 s');
}

$t->stop;

###############################################################################
# max=1: every link in the same slot, three repositories with the same tag
# names and a blob shared by two of them

$t = RegTest->new(delete => 1, location_extra => 'registry_link_cache max=1;');

{
    my (%checks, %img);
    my $shared = 'a layer in lc/one and lc/two';

    for my $repo ('lc/one', 'lc/two', 'lc/three') {
        for my $tag ('a', 'b') {
            my $config = qq({"os":"linux","repo":"$repo","tag":"$tag"});
            my @layers = ("layer 1 of $repo:$tag", "layer 2 of $repo:$tag");
            push @layers, $shared if $tag eq 'a' && $repo ne 'lc/three';

            my $i = $img{"$repo:$tag"} = $t->push_image($repo, $tag,
                config => $config, layers => \@layers);

            push @{ $checks{$repo} },
                [ "$repo:$tag", "/v2/$repo/manifests/$tag",
                  content => $i->{manifest}, digest => $i->{digest} ],
                [ "$repo\@digest of $tag", "/v2/$repo/manifests/$i->{digest}",
                  content => $i->{manifest}, digest => $i->{digest} ],
                [ "$repo config of $tag", "/v2/$repo/blobs/$i->{config}",
                  content => $config ];

            for my $n (0 .. $#layers) {
                push @{ $checks{$repo} }, [ "$repo layer $n of $tag",
                                "/v2/$repo/blobs/$i->{layers}[$n]",
                                content => $layers[$n] ];
            }
        }
    }

    my $sd = RegTest::digest($shared);
    my $only1 = $t->push_blob('lc/one', 'a blob only lc/one holds');

    push @{ $checks{'across repositories'} },
        [ 'lc/one only blob', "/v2/lc/one/blobs/$only1",
          content => 'a blob only lc/one holds' ],
        [ 'lc/two lacks lc/one\'s blob', "/v2/lc/two/blobs/$only1",
          status => 404, code => 'BLOB_UNKNOWN' ],
        [ 'lc/three lacks the shared blob', "/v2/lc/three/blobs/$sd",
          status => 404, code => 'BLOB_UNKNOWN' ],
        [ 'lc/three lacks lc/one:a', "/v2/lc/three/manifests/"
          . $img{'lc/one:a'}{digest},
          status => 404, code => 'MANIFEST_UNKNOWN' ];

    # interleaved: one from each group in turn; run forward, then backward

    my @checks;
    my @groups = map { [ @{ $checks{$_} } ] } sort keys %checks;
    while (grep { @$_ } @groups) {
        push @checks, map { @$_ ? shift @$_ : () } @groups;
    }

    my $round = sub {
        my ($name, @list) = @_;
        my @bad;
        for my $c (@list) {
            my ($what, $path, %want) = @$c;
            my $why = mismatch($t->req('GET', $path), status => 200, %want);
            push @bad, "$what: $why" if $why;
        }
        is(join("\n", @bad), '', $name);
    };

    for my $pass (1 .. 4) {
        $round->("max=1: pass $pass, all " . @checks . ' answers right',
                 $pass % 2 ? @checks : reverse @checks);
    }

    # delete the shared layer from lc/two and tag b from lc/three

    is($t->req('DELETE', "/v2/lc/two/blobs/$sd")->{status}, 202,
       'max=1: delete the shared layer from lc/two');
    is($t->req('DELETE', '/v2/lc/three/manifests/b')->{status}, 202,
       'max=1: delete lc/three:b');

    for my $c (@checks) {
        if ($c->[1] eq "/v2/lc/two/blobs/$sd") {
            $c = [ $c->[0], $c->[1], status => 404, code => 'BLOB_UNKNOWN' ];
        } elsif ($c->[1] eq '/v2/lc/three/manifests/b') {
            $c = [ $c->[0], $c->[1], status => 404,
                   code => 'MANIFEST_UNKNOWN' ];
        }
    }

    for my $pass (1 .. 2) {
        $round->("max=1: after the deletes, pass $pass, only they are gone",
                 $pass % 2 ? @checks : reverse @checks);
    }
}

$t->stop;

###############################################################################
# the directive's syntax: nginx -t

my $tmp = tempdir('linkcache-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});
my $confs = 0;

# nginx -t of a minimal configuration; (exit status, output)
sub nginx_t {
    my (%o) = @_;

    my $p = "$tmp/" . ++$confs;
    make_path("$p/store");

    my $user = $> == 0 ? "user root;\n" : '';
    my $port = free_port();

    spew("$p/nginx.conf", <<"EOF");
load_module $RegTest::MODULE;
${user}error_log $p/error.log;
pid $p/nginx.pid;
events {
}
http {
    client_body_temp_path $p/body;
    proxy_temp_path $p/proxy;
    fastcgi_temp_path $p/fastcgi;
    uwsgi_temp_path $p/uwsgi;
    scgi_temp_path $p/scgi;
    @{[ $o{http} // '' ]}
    server {
        listen 127.0.0.1:$port;
        location /v2/ {
            registry on;
            registry_root $p/store;
            @{[ $o{location} // '' ]}
        }
    }
}
EOF

    return run_cmd([$RegTest::NGINX, '-t', '-p', "$p/", '-e', "$p/error.log",
                    '-c', "$p/nginx.conf"],
                   env => { RegTest::nginx_env($p) });
}

{
    my ($rc, $out) = nginx_t(http => 'registry_link_cache max=10 valid=250ms;',
                             location => 'registry_link_cache off;');
    is($rc, 0, 'nginx -t: max=10 valid=250ms in http, off in a location')
        or diag($out);

    for my $bad ('max=0', 'max=abc', 'valid=0', 'valid=xyz', 'size=10') {
        my $args = $bad =~ /^max=/ ? $bad : "max=10 $bad";
        ($rc, $out) = nginx_t(location => "registry_link_cache $args;");
        isnt($rc, 0, "nginx -t fails: registry_link_cache $args");
        like($out, qr/registry_link_cache.*\Q$bad\E/,
             "nginx -t names the directive and $bad");
    }

    for my $bad ('valid=5s', 'off max=10') {
        ($rc, $out) = nginx_t(location => "registry_link_cache $bad;");
        isnt($rc, 0, "nginx -t fails: registry_link_cache $bad");
        like($out, qr/registry_link_cache/, "nginx -t names the directive ($bad)");
    }

    for my $dup (['max=10', 'max=20'], ['off', 'max=20'], ['max=10', 'off']) {
        ($rc, $out) = nginx_t(location => join(' ', map {
            "registry_link_cache $_;" } @$dup));
        isnt($rc, 0, "nginx -t fails: registry_link_cache @$dup[0] then "
                     . "@$dup[1] in one block");
        like($out, qr/registry_link_cache.*duplicate/,
             "nginx -t says duplicate (@$dup)");
    }
}

done_testing();
