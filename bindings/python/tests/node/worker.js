// An unmodified Node cluster worker (the one-liner), run by a Python primary with
// setup_primary(exec='node', args=[this file]). Serves "node worker <pid>\n".
const cluster=require('node:cluster'), http=require('node:http'); if (cluster.isWorker) http.createServer((q,r)=>r.end('node worker '+process.pid+'\n')).listen(+process.env.PORT||0,'127.0.0.1')
