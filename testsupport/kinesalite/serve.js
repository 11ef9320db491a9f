// Starts kinesalite on 127.0.0.1 only (its CLI binds every interface).
// Run as: NODE_PATH=.tools/kinesalite/node_modules node serve.js PORT (0 for any).
const kinesalite = require('kinesalite');
const port = parseInt(process.argv[2] || '0', 10);
const server = kinesalite({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 100 });
server.listen(port, '127.0.0.1', () => { console.log('listening ' + server.address().port); });
