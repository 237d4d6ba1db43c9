fn main(){} 
