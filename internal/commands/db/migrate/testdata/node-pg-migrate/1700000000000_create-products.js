exports.up = (pgm) => {
  pgm.createTable('products', { id: 'id', name: { type: 'text', notNull: true } });
};

exports.down = (pgm) => {
  pgm.dropTable('products');
};
